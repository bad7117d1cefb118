"""Repository defaults for pytest; the rig's pytest plugin itself is registered by entry point."""

collect_ignore_glob = [".rig-sim/*", "build/*", "results/*"]
