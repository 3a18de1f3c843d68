"""The Stage-5 generator: analysis_result -> course, through router, gate and ladder."""
