"""What the tests share and are not tests: stateful fakes of the outside systems (`fakes`), a world of them with the
app built over it (`world`), calls against a running sandbox (`wire`), Event Grid deliveries as the host sends them
(`events`), in-memory OpenTelemetry (`otel`) and a reader of infra/'s Bicep (`bicep`). tests/conftest.py turns the
ones a test asks for by name into fixtures."""
