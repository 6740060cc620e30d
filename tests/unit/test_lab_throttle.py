"""ARM's token buckets as the lab keeps them (asr_lab.throttle), on made-up instants: no sleeping."""

from __future__ import annotations

import pytest

from asr_lab.throttle import (ARM_LIMITS, GLOBAL_FACTOR, ArmThrottle, BucketLimit, OperationClass, TokenBucket,
                              parse_limits)

SUB, APP, OTHER_APP = "sub-1", "app-1", "app-2"


def test_methods_fall_in_arms_operation_classes():
    assert [OperationClass.of(m) for m in ("GET", "head", "PUT", "PATCH", "POST", "DELETE")] == [
        OperationClass.READS, OperationClass.READS, OperationClass.WRITES, OperationClass.WRITES,
        OperationClass.WRITES, OperationClass.DELETES]


def test_arms_documented_limits():
    assert ARM_LIMITS == {OperationClass.READS: BucketLimit(250, 25), OperationClass.WRITES: BucketLimit(200, 10),
                          OperationClass.DELETES: BucketLimit(200, 10)}


def test_a_bucket_refills_at_its_rate_up_to_its_size():
    bucket = TokenBucket(BucketLimit(10, 2), tokens=0, updated=100.0)
    assert bucket.level(101.5) == 3
    assert bucket.level(1_000) == 10
    assert bucket.level(99) == 0  # a clock that went back refills nothing
    assert bucket.wait_for_token(100.0) == 1 and bucket.wait_for_token(100.5) == 0


def test_the_burst_passes_then_429_with_the_wait_for_the_next_token():
    throttle = ArmThrottle(limits={**ARM_LIMITS, OperationClass.READS: BucketLimit(5, 0.25)})
    answers = [throttle.admit(SUB, APP, "GET", 0.0) for _ in range(6)]
    assert [a.admitted for a in answers] == [True] * 5 + [False]
    assert [a.remaining for a in answers[:5]] == [4, 3, 2, 1, 0]
    refused = answers[-1]
    assert refused.retry_after == 4  # one token at 0.25/s
    assert refused.headers() == {"x-ms-ratelimit-remaining-subscription-reads": "0",
                                 "x-ms-ratelimit-remaining-subscription-global-reads": str(5 * GLOBAL_FACTOR - 5),
                                 "Retry-After": "4"}
    # asking again before then is refused with a fresh, shorter wait, and takes no token
    again = throttle.admit(SUB, APP, "GET", 2.0)
    assert (again.admitted, again.retry_after) == (False, 2)
    assert throttle.admit(SUB, APP, "GET", 4.0).admitted
    assert throttle.throttled[OperationClass.READS] == 2 and throttle.admitted[OperationClass.READS] == 6


def test_each_principal_and_class_has_its_own_bucket():
    throttle = ArmThrottle(limits={op: BucketLimit(1, 0.1) for op in OperationClass})
    assert throttle.admit(SUB, APP, "GET", 0).admitted
    assert not throttle.admit(SUB, APP, "GET", 0).admitted
    assert throttle.admit(SUB, APP, "POST", 0).admitted  # writes
    assert throttle.admit(SUB, APP, "DELETE", 0).admitted
    assert throttle.admit(SUB, OTHER_APP, "GET", 0).admitted
    assert throttle.admit("sub-2", APP, "GET", 0).admitted
    assert throttle.admit(SUB, APP.upper(), "GET", 0).admitted is False  # client ids compare case-insensitively


def test_the_subscriptions_bucket_is_shared_by_its_principals():
    throttle = ArmThrottle(limits={**ARM_LIMITS, OperationClass.WRITES: BucketLimit(1, 0.5)})
    admitted = [throttle.admit(SUB, f"app-{n}", "PUT", 0).admitted for n in range(GLOBAL_FACTOR + 1)]
    assert admitted == [True] * GLOBAL_FACTOR + [False]
    refused = throttle.admit(SUB, "app-new", "PUT", 0)
    assert refused.remaining == 1 and refused.remaining_global == 0 and refused.retry_after == 1


def test_lifted_throttling_admits_everything_and_still_reports_the_headers():
    throttle = ArmThrottle(enabled=False, limits={**ARM_LIMITS, OperationClass.READS: BucketLimit(1, 0.1)})
    answers = [throttle.admit(SUB, APP, "GET", 0) for _ in range(5)]
    assert all(a.admitted for a in answers) and answers[-1].remaining == 1
    throttle.configure(enabled=True)
    assert throttle.admit(SUB, APP, "GET", 0).admitted and not throttle.admit(SUB, APP, "GET", 0).admitted


def test_tightening_a_class_keeps_the_others_and_refills_every_bucket():
    throttle = ArmThrottle()
    for _ in range(250):
        throttle.admit(SUB, APP, "GET", 0)
    throttle.configure(limits={OperationClass.WRITES: BucketLimit(3, 1)})
    assert throttle.limits[OperationClass.READS] == ARM_LIMITS[OperationClass.READS]
    assert throttle.admit(SUB, APP, "GET", 0).remaining == 249


@pytest.mark.parametrize("body, message", [
    ([], "must be an object"),
    ({"lists": {"burst": 1, "per_second": 1}}, "unknown operation class 'lists'"),
    ({"reads": {"burst": 1}}, "limits.reads must be an object with exactly burst and per_second"),
    ({"reads": {"burst": 0, "per_second": 1}}, "limits.reads: burst must be a whole number"),
    ({"reads": {"burst": 2.5, "per_second": 1}}, "limits.reads: burst must be a whole number"),
    ({"writes": {"burst": 5, "per_second": 0}}, "limits.writes: per_second must be a number above 0"),
    ({"writes": {"burst": 5, "per_second": "fast"}}, "limits.writes: per_second must be a number above 0"),
])
def test_bad_limits_are_refused_naming_the_mistake(body, message):
    with pytest.raises(ValueError, match=message):
        parse_limits(body)


def test_good_limits_parse():
    assert parse_limits({"reads": {"burst": 20, "per_second": 2}}) == {OperationClass.READS: BucketLimit(20, 2)}
