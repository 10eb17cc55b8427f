"""What the tests and the benchmarks share (neither imports the other): the in-process system
launcher (`system`), the scripted OpenAI-compatible model server, Redis for tests (the shared
server or a private `redis-server`), loopback serving, worker processes, and test data."""
