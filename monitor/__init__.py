"""The model monitor: payload capture receiver, drift detection (Evidently) and shadow comparison."""
