"""The shipped model's version must change with its content: the plugin re-indexes on a version change."""
from cbmir_train.benchmark_steps import model_version


def test_two_different_model_files_never_share_a_version(tmp_path):
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    first.write_bytes(b"weights one")
    second.write_bytes(b"weights two")
    a, b = model_version("1.1.0", first, "int8"), model_version("1.1.0", second, "int8")
    assert a != b
    assert a.startswith("1.1.0-int8+") and len(a.split("+")[1]) == 8
    assert model_version("1.1.0", first, "int8") == a  # the same file keeps its version
