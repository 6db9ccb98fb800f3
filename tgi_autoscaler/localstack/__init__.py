"""localstack."""
