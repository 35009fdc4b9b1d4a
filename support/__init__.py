"""What the tests and the benchmarks share: fake Telegram and Slack servers that speak the
platforms' JSON on 127.0.0.1, and a private redis-server (or Redis Cluster) to run against.
Never imported by parley itself."""
