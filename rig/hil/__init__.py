"""Orchestration of a HIL run: the bench that owns its parts (`bench`, `provider`), the session of a run
(`session`), one attempt of one cell (`attempt`), and the matrix of cells with its order and retries
(`matrix`). Above the drivers and the report; below the front ends (`rig.cli`, `rig.pytest_plugin`)."""
