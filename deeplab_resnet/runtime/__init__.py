"""runtime: how TensorFlow runs here (devices, precision, sessions, several machines).

- `tf_startup.py`: TensorFlow's start-up messages held to TF_CPP_MIN_LOG_LEVEL; GPU memory on
  demand.
- `devices.py`: the devices line of every run, `--deterministic`.
- `precision.py`: float32, bfloat16 or float16 per CPU / GPU, said in one line.
- `tf_config.py`: TF_CONFIG read without TensorFlow (which task this is, the chief or not).
- `distribute.py`: tf.distribute strategies in graph mode, all-reduce helpers.
- `session.py`: the Session configuration (threads, Grappler passes of inference graphs).
"""
