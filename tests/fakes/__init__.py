"""What the stateful HTTP fakes (tests/integrations/<system>/fake_server.py) share."""
