"""Query-argument parsing (the work queue and pacer: tests/unit/service/test_workqueue.py)."""
import pytest

from cbmir.vectors.search import ApiError, parse_params


def test_defaults_follow_the_api_contract():
    params = parse_params({})
    assert (params.k, params.exclude_same_patient, params.group_by) == (10, True, "study")


@pytest.mark.parametrize("args", [{"k": "abc"}, {"k": "0"}, {"k": "100000"},
                                  {"group_by": "series"}, {"exclude_same_patient": "maybe"},
                                  {"frame": "-1"}])
def test_bad_arguments_are_a_400_naming_the_argument(args):
    with pytest.raises(ApiError) as caught:
        parse_params(args)
    assert caught.value.status == 400 and list(args)[0] in caught.value.message


def test_flags_and_filters_are_read():
    params = parse_params({"k": "3", "exclude_same_patient": "false", "group_by": "INSTANCE",
                           "label": "glioma", "modality": "MR"})
    assert (params.k, params.exclude_same_patient, params.group_by) == (3, False, "instance")
    assert (params.label, params.modality) == ("glioma", "MR")
