"""TF Serving's own path: a TF1 session loading the SavedModel and running
the signatures' tensors (what the model server's SavedModelBundle does),
the encoded-image signature, the warm-up records, and an opt-in live server.

The live-server test runs when `tensorflow_model_server` is on PATH (it is
started on a copy of the export) or when TFDEBLUR_SERVING_URL names a
running server's REST model URL, e.g. http://localhost:8501/v1/models/tiny,
serving `tiny_serving_export` (TFDEBLUR_SERVING_GRPC=host:port adds gRPC):

    python -c "from tests.test_serving import write_live_export; write_live_export('models/tiny/1')"
    docker run --rm -p 8500:8500 -p 8501:8501 -v "$PWD/models/tiny:/models/tiny" \\
        -e MODEL_NAME=tiny tensorflow/serving:2.21.0
    TFDEBLUR_SERVING_URL=http://localhost:8501/v1/models/tiny TFDEBLUR_SERVING_GRPC=localhost:8500 \\
        pytest tests/test_serving.py -k live
"""
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfdeblur.models as models
from tests.helpers import random_images
from tfdeblur import export
from tfdeblur.io import to_uint8

WARMUP = os.path.join("assets.extra", export.WARMUP_FILE)


def tiny_model(seed=0):
    """A tiny LMFN (multiple 4) whose zero-initialized weights get random
    values, so its output is not its input."""
    keras.utils.set_random_seed(seed)
    model = models.build("lmfn", levels=2, channels=16, mffd_channels=16, num_rfdb=1)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if not w.numpy().any():
            w.assign(rng.normal(0.0, 0.05, w.shape).astype("float32"))
    return model


def write_live_export(path):
    """The export the live-server test expects (deterministic weights)."""
    return export.export_saved_model(tiny_model(), path, overwrite=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model = tiny_model()
    path = export.export_saved_model(model, tmp_path_factory.mktemp("serving") / "tiny" / "1")
    return model, str(path)


def keras_uint8(model, images):
    return to_uint8(np.clip(model(images.astype(np.float32) / 255.0).numpy(), 0.0, 1.0))


def png_bytes(image):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


class Session:
    """A TF1 session holding the SavedModel as TF Serving loads it."""

    def __init__(self, path):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path)
        self.signatures = meta.signature_def

    def run(self, signature, **inputs):
        sig = self.signatures[signature]
        feed = {sig.inputs[k].name: v for k, v in inputs.items()}
        names = {k: t.name for k, t in sig.outputs.items()}
        return self.session.run(names, feed)


@pytest.fixture(scope="module")
def session(served):
    s = Session(served[1])
    yield s
    s.session.close()


def assert_close_uint8(got, expected):
    diff = np.abs(got.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2, diff.max()


def test_tf1_session_runs_the_signature_tensors_like_keras(served, session):
    model, _ = served
    assert set(session.signatures) >= {"serving_default", "deblur_float", "deblur_encoded"}
    x = random_images(2, 21, 30, seed=4)
    got = session.run("deblur_float", images=x)["deblurred"]
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)
    images = to_uint8(x)
    got = session.run("serving_default", images=images)["deblurred"]
    assert got.dtype == np.uint8
    assert_close_uint8(got, keras_uint8(model, images))
    assert np.abs(got.astype(int) - images).max() > 1  # the network changes the image


def test_encoded_signature_takes_png_and_jpeg_of_any_size_and_returns_png(served, session):
    model, _ = served
    a = to_uint8(random_images(1, 17, 26, seed=1))[0]
    b = to_uint8(random_images(1, 32, 20, seed=2))[0]
    jpeg = io.BytesIO()
    Image.fromarray(b).save(jpeg, format="JPEG", quality=95)
    out = session.run("deblur_encoded", image_bytes=np.array([png_bytes(a), jpeg.getvalue()], dtype=object))
    restored = [np.asarray(Image.open(io.BytesIO(data))) for data in out["deblurred_bytes"]]
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" for data in out["deblurred_bytes"])
    assert_close_uint8(restored[0], keras_uint8(model, a[None])[0])
    # JPEG decoders differ (PIL's and TF's DCT): the reference decodes as the
    # graph does; what is checked here is the network pass and the PNG.
    decoded_b = tf.io.decode_jpeg(jpeg.getvalue(), channels=3).numpy()
    assert restored[1].shape == b.shape
    assert_close_uint8(restored[1], keras_uint8(model, decoded_b[None])[0])
    with pytest.raises(tf.errors.InvalidArgumentError):
        session.run("deblur_encoded", image_bytes=np.array([b"not an image"], dtype=object))


def test_warmup_records_are_prediction_logs_the_signatures_accept(served, session):
    from tensorflow_serving.apis import prediction_log_pb2

    _, path = served
    records = list(tf.data.TFRecordDataset(os.path.join(path, WARMUP)).as_numpy_iterator())
    assert len(records) == 3
    seen = set()
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = session.run(request.model_spec.signature_name, **inputs)
        assert outputs
        seen.add(request.model_spec.signature_name)
    assert seen == {"serving_default", "deblur_float", "deblur_encoded"}


def test_handwritten_prediction_log_bytes_equal_the_protos(monkeypatch):
    pytest.importorskip("tensorflow_serving.apis")
    cases = [
        ("serving_default", {"images": np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)}),
        ("deblur_encoded", {"image_bytes": np.array([b"\x89PNG" * 40, b"x"], dtype=object)}),
    ]
    with_protos = [export.prediction_log(*case) for case in cases]
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)  # as if not installed
    assert [export.prediction_log(*case) for case in cases] == with_protos


def graph_ops(session):
    return {op.type for op in session.graph.get_operations()} | {
        node.op for f in session.graph.as_graph_def().library.function for node in f.node_def}


def test_a_static_saved_model_takes_its_size_only(session, tmp_path):
    model = tiny_model()
    path = export.export_saved_model(model, tmp_path / "1", input_size="24x32")
    s = Session(str(path))
    shape = [d.size for d in s.signatures["deblur_float"].inputs["images"].tensor_shape.dim]
    assert shape == [-1, 24, 32, 3]
    x = random_images(1, 24, 32, seed=5)
    np.testing.assert_allclose(s.run("deblur_float", images=x)["deblurred"], model(x).numpy(), atol=1e-5)
    # The size-multiple padding (a MirrorPad of the dynamic export) is gone;
    # LMFN's fusion still zero-pads channels, a static Pad.
    assert "MirrorPad" in graph_ops(session) and "MirrorPad" not in graph_ops(s)
    with pytest.raises(ValueError):  # TF refuses another size before the graph runs
        s.run("deblur_float", images=random_images(1, 20, 32))
    records = list(tf.data.TFRecordDataset(os.path.join(path, WARMUP)).as_numpy_iterator())
    assert len(records) == 3


# -- live server (opt-in) -------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    url, grpc_target = os.environ.get("TFDEBLUR_SERVING_URL"), os.environ.get("TFDEBLUR_SERVING_GRPC")
    if url:
        yield url.rstrip("/"), grpc_target
        return
    binary = shutil.which("tensorflow_model_server")
    if not binary:
        pytest.skip("no live TF Serving: tensorflow_model_server is not on PATH and TFDEBLUR_SERVING_URL is not set")
    base = tmp_path_factory.mktemp("live") / "tiny"
    write_live_export(base / "1")
    rest, grpc_port = _free_port(), _free_port()
    server = subprocess.Popen([binary, f"--port={grpc_port}", f"--rest_api_port={rest}", "--model_name=tiny",
                               f"--model_base_path={base}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest}/v1/models/tiny"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if b"AVAILABLE" in reply.read():
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("tensorflow_model_server did not report the model AVAILABLE within 60 s")
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_live_server_rest_and_grpc(live):
    check_live_server(*live)


def check_live_server(url, grpc_target=None):
    """The live test's client: REST `deblur_encoded` (and gRPC when given)
    against `tiny_model()`'s output."""
    model = tiny_model()
    image = to_uint8(random_images(1, 19, 27, seed=6))[0]
    expected = keras_uint8(model, image[None])[0]
    body = {"signature_name": "deblur_encoded", "instances": [{"b64": base64.b64encode(png_bytes(image)).decode()}]}
    request = urllib.request.Request(f"{url}:predict", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        prediction = json.loads(reply.read())["predictions"][0]
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["b64"]))))
    assert_close_uint8(got, expected)
    if grpc_target:
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        request.model_spec.name = url.rsplit("/", 1)[-1]
        request.model_spec.signature_name = "serving_default"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(image[None]))
        with grpc.insecure_channel(grpc_target) as channel:
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60.0)
        assert_close_uint8(tf.make_ndarray(reply.outputs["deblurred"])[0], expected)


class StandInServer:
    """A local stand-in for TF Serving's REST `:predict` on one SavedModel, so
    the live test's client runs (and can fail) without a model server: the
    row format (`instances`), `{"b64": ...}` for string inputs, and string
    outputs named `*_bytes` returned as `{"b64": ...}`, as TF Serving does."""

    def __init__(self, path, name="tiny"):
        import http.server
        import threading

        loaded = tf.saved_model.load(str(path))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                if self.path != f"/v1/models/{name}:predict":
                    return self._reply(404, {"error": f"no model at {self.path}"})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fn = loaded.signatures[body.get("signature_name", "serving_default")]
                (key, spec), = fn.structured_input_signature[1].items()
                values = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in body["instances"]]
                (out_key, out), = fn(**{key: tf.constant(values, dtype=spec.dtype)}).items()
                out = out.numpy()
                rows = ([{"b64": base64.b64encode(v).decode()} for v in out] if out_key.endswith("_bytes")
                        else out.tolist())
                self._reply(200, {"predictions": rows})

            def _reply(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/models/{name}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_live_client_runs_against_a_stand_in_rest_server(tmp_path):
    """The opt-in live test's client code, exercised here: right model, it
    passes; another model behind the same URL, it fails."""
    with StandInServer(write_live_export(tmp_path / "tiny" / "1")) as server:
        check_live_server(server.url)
    other = export.export_saved_model(tiny_model(seed=1), tmp_path / "other" / "1")
    with StandInServer(other) as server, pytest.raises(AssertionError):
        check_live_server(server.url)
