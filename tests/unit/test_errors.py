import pytest

from lxflex.powerflex import errors as e


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (79, e.VolumeNotFoundError),
        (142, e.ProtectionDomainNotFoundError),
        (171, e.StoragePoolNotFoundError),
        (3, e.NotFoundError),
        (80, e.HostNotFoundError),
        (99, e.NameInUseError),
        (81, e.AlreadyMappedError),
        (4037, e.AlreadyMappedError),
        (84, e.NotMappedError),
        (4039, e.NotMappedError),
        (182, e.TooManySnapshotsError),
        (225, e.InvalidSizeError),
        (133, e.InvalidSizeError),
        (226, e.NameTooLongError),
        (227, e.InvalidNameError),
        (104, e.VolumeMappedError),
        (198, e.DifferentVTreeError),
        (12345, e.GatewayError),
    ],
)
def test_error_class_follows_the_code(code: int, cls: type[e.GatewayError]) -> None:
    err = e.error_from_response(500, {"message": "m", "httpStatusCode": 500, "errorCode": code})
    assert type(err) is cls
    assert err.error_code == code
    assert err.http_status == 500
    assert err.message == "m"


def test_code_as_string_and_not_found_family() -> None:
    err = e.error_from_response(500, {"message": "Could not find the volume", "errorCode": "79"})
    assert isinstance(err, e.NotFoundError)
    assert isinstance(err, e.GatewayError)
    assert isinstance(err, e.PowerFlexError)


def test_details_envelope_of_snapshot_volumes() -> None:
    body = {
        "message": "Error with details",
        "httpStatusCode": 500,
        "errorCode": 0,
        "details": [
            {
                "rc": 182,
                "error": "TOO_MANY_SNAPS_IN_VTREE",
                "errorMessage": "There are too many snapshots in the VTree",
            }
        ],
    }
    err = e.error_from_response(500, body, method="POST", path="/x")
    assert isinstance(err, e.TooManySnapshotsError)
    assert err.message == "There are too many snapshots in the VTree"
    assert err.details[0]["rc"] == 182
    assert str(err).startswith("POST /x: There are too many snapshots")


def test_non_json_error_body() -> None:
    err = e.error_from_response(503, "<html>down</html>")
    assert type(err) is e.GatewayError
    assert err.message == "HTTP 503"
    assert err.error_code == 0


def test_timeout_is_a_transport_error() -> None:
    assert issubclass(e.GatewayTimeoutError, e.TransportError)
    assert not issubclass(e.TransportError, e.GatewayError)
