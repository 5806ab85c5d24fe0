"""Cloud capture formats -> the monitor's capture records.

Each cloud stores scored requests in its own format; one module per format turns them into the
record the serving runtime's capture sends on Kubernetes (``serving/capture.py``)::

    {"id", "ts", "model", "version", "rows", "inputs": {column: [values]}, "outputs", "input_hash"}

so drift and shadow comparison see the same DataFrame whatever the target:

* :mod:`monitor.normalise.sagemaker`: SageMaker data capture (S3 JSON lines, ``captureData``);
* :mod:`monitor.normalise.azureml`: Azure ML online deployment data collection (CloudEvents JSON
  lines under ``<endpoint>/<deployment>/<collection>/yyyy/MM/dd/HH/``);
* :mod:`monitor.normalise.vertex`: Vertex AI request-response logging (BigQuery rows).

Request bodies are parsed by MLflow's own scoring-server parser (:mod:`monitor.normalise.body`),
so every request format the model server accepts is understood. A record that cannot be read is
counted under a reason (a ``collections.Counter``), never raised.
"""

from monitor.normalise.body import NormaliseError, make_record, parse_request, parse_response

__all__ = ["NormaliseError", "make_record", "parse_request", "parse_response"]
