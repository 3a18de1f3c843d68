"""The log world model: courses -> tasks -> every tier's outcomes -> attempt logs.

- `settings`: conf/simulate as typed settings (`world_settings`);
- `draws`: the seeded draws, bit for bit as numpy's own;
- `tasks`: courses (the Stage-4 analysis) and their Stage-5 tasks;
- `outcomes`: every tier's outcome on every attempt (the outcome cube), gate errors too;
- `simulate`: the three in order, from one seeded generator;
- `tables`: what router-simulate writes (tasks, outcomes, attempt logs);
- `calibration`: the seed note's figures, measured.

`simulate_world` and `task_table` are named here too: training and the tests draw fresh
worlds through them.
"""

from pipeline.world.settings import WorldSettings, world_settings
from pipeline.world.simulate import SimulatedWorld, simulate_world
from pipeline.world.tables import task_table

__all__ = ["SimulatedWorld", "WorldSettings", "simulate_world", "task_table", "world_settings"]
