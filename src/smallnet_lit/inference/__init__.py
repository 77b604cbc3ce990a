"""Using trained models: checkpoint loading, face detection, landmark prediction from
boxes, smoothing, ONNX export, the Python API."""
