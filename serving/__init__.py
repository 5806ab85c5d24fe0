"""Model server of mlflow-deploy: MLflow's scoring app with Prometheus metrics, sized for one pod.

Start it with ``python -m serving [serve] --model-uri URI``; see ``serving.config`` for flags and
environment variables, ``serving.metrics`` for the metric names, ``serving.local.run_local`` to
run it from Python. Importing this package is cheap: MLflow is imported by the workers only.
"""

__version__ = "0.1.0"
