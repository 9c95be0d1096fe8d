"""Argument decoding and the large-stack runner, without Orthanc (the index recovery loop:
test_availability.py)."""
import json
import threading

import pytest

from cbmir.service.request_guard import decode_args, run_with_large_stack


@pytest.mark.parametrize("raw, decoded", [
    ("low+grade+glioma", "low grade glioma"), ("low%20grade%20glioma", "low grade glioma"),
    ("m%C3%A9ningiome+%28grade+I%29", "méningiome (grade I)"), ("a%2Bb", "a+b"),
    ("50%2520off", "50%20off"), ("glioma", "glioma"), ("%ZZ", "%ZZ"), ("%C3", "\ufffd"),
])
def test_arguments_are_decoded_once_form_style(raw, decoded):
    assert decode_args({"label": raw}) == {"label": decoded}
    assert decode_args({"a%5Fb": "1"}) == {"a_b": "1"} and decode_args(None) == {}


def test_large_stack_returns_results_and_raises_errors_in_the_caller():
    assert run_with_large_stack(lambda: threading.current_thread().name) == "cbmir-parse"
    with pytest.raises(ZeroDivisionError):
        run_with_large_stack(lambda: 1 / 0)


def test_deep_json_on_the_large_stack_is_a_recursion_error_not_a_crash():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        run_with_large_stack(lambda: json.loads(deep))
    assert run_with_large_stack(lambda: len(str(json.loads("[" * 600 + "]" * 600)))) == 1200
