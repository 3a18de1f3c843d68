"""Decision ids: version-4 UUIDs from pooled OS randomness, never repeated: not across the
pool's refills, not between threads, not between a process and its forked child."""

from __future__ import annotations

import os
import threading
import uuid

from router_model.logs.decision_ids import POOL_BYTES, decision_ids


def _check(ids: list[str]) -> None:
    for text in ids:
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_ids_are_random_version_4_uuids_one_by_one_and_in_batches():
    batch = decision_ids(500)
    singles = [decision_ids(1)[0] for _ in range(3 * POOL_BYTES // 16)]  # several refills
    huge = decision_ids(2 * POOL_BYTES // 16 + 3)  # more than one pool's worth at once
    everything = [*batch, *singles, *huge]
    _check(everything)
    assert len(set(everything)) == len(everything)
    assert {text[16] for text in singles} == {"8", "9", "a", "b"}  # variants drawn at random
    assert decision_ids(0) == []


def test_threads_never_get_the_same_id():
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(k: int) -> None:
        for _ in range(2000):
            drawn[k] += decision_ids(1 + k)

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for ids in drawn for i in ids]
    assert len(everything) == 2000 * (1 + 2 + 3 + 4) == len(set(everything))


def test_a_forked_child_draws_fresh_bytes_not_the_parents_pool():
    decision_ids(1)  # the parent's pool now holds unused bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, "".join(decision_ids(1) + decision_ids(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    child_ids = [child[i:i + 32] for i in range(0, len(child), 32)]
    parent_ids = decision_ids(1) + decision_ids(3)
    assert len(child_ids) == 4
    _check(child_ids)
    assert not set(child_ids) & set(parent_ids)
