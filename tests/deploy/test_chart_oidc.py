"""The chart takes OIDC settings (config.auth.oidc) and the provider's JWKS from a Secret or a ConfigMap."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from chart_support import Rendered, render, router_templates, values_of

from serving.config import load_settings

OIDC = {
    "issuer": "https://login.example.gov.uk/tenant/v2.0",
    "audience": "api://sovereign",
    "claims": {"rules": [{"claim": "groups", "value": "sg-analysts", "team": "analysts"}]},
}


def _values(**jwks: str) -> dict[str, Any]:
    values = copy.deepcopy(values_of("values-h200-8b.yaml"))
    values["config"].setdefault("auth", {})["oidc"] = copy.deepcopy(OIDC)
    values["auth"]["jwks"] = jwks
    return values


def _config(rendered: Rendered) -> dict[str, Any]:
    (cm,) = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-config")]
    return yaml.safe_load(cm["data"]["config.yaml"])


def _router(rendered: Rendered) -> dict[str, Any]:
    (template,) = router_templates(rendered).values()
    return template["spec"]


@pytest.mark.parametrize("source", ["existingSecret", "existingConfigMap"])
def test_jwks_mounted_in_the_router_and_named_in_the_config(generate, source: str) -> None:
    rendered = render(generate, f"oidc-{source}", _values(**{source: "idp-jwks"}))
    config = _config(rendered)
    assert config["auth"]["oidc"]["jwks_file"] == "/etc/sovereign/jwks/jwks.json"
    assert config["auth"]["oidc"]["issuer"] == OIDC["issuer"]
    oidc = load_settings(data=config).auth.oidc  # the server accepts what the chart renders
    assert oidc is not None and str(oidc.jwks_file) == "/etc/sovereign/jwks/jwks.json"
    router = _router(rendered)
    (volume,) = [v for v in router["volumes"] if v["name"] == "oidc-jwks"]
    if source == "existingSecret":
        assert volume["secret"]["secretName"] == "idp-jwks"
    else:
        assert volume["configMap"]["name"] == "idp-jwks"
    (mount,) = [m for m in router["containers"][0]["volumeMounts"] if m["name"] == "oidc-jwks"]
    assert mount == {"name": "oidc-jwks", "mountPath": "/etc/sovereign/jwks", "readOnly": True}
    assert "subPath" not in mount  # a folder mount: the kubelet's updates reach the router, which re-reads the file
    cluster = rendered.one("RayService")["spec"]["rayClusterConfig"]
    others = [cluster["headGroupSpec"]] + [g for g in cluster["workerGroupSpecs"] if g["groupName"] != "routers"]
    for group in others:
        assert not any(v["name"] == "oidc-jwks" for v in group["template"]["spec"].get("volumes", []))
    serve_config = yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])
    assert (
        serve_config["applications"][0]["args"]["config"]["auth"]["oidc"]["jwks_file"]
        == "/etc/sovereign/jwks/jwks.json"
    )


def test_oidc_with_a_jwks_url_needs_no_volume(generate) -> None:
    values = _values()
    values["config"]["auth"]["oidc"]["jwks_url"] = "https://login.example.gov.uk/tenant/discovery/keys"
    rendered = render(generate, "oidc-url", values)
    assert load_settings(data=_config(rendered)).auth.oidc is not None
    assert not any(v["name"] == "oidc-jwks" for v in _router(rendered)["volumes"])


@pytest.mark.parametrize(
    ("jwks", "oidc", "problem"),
    [
        ({"existingSecret": "a", "existingConfigMap": "b"}, True, "not both"),
        ({"existingSecret": "a"}, False, "config.auth.oidc is not"),
    ],
)
def test_inconsistent_oidc_values_fail(generate, jwks: dict[str, str], oidc: bool, problem: str) -> None:
    import helm_python as helm

    values = _values(**jwks)
    if not oidc:
        del values["config"]["auth"]["oidc"]
    with pytest.raises(helm.HelmError, match=problem):
        generate.render_chart(values)


def test_schema_refuses_unknown_oidc_and_jwks_keys(generate) -> None:
    import helm_python as helm

    for mutate in (
        lambda v: v["auth"]["jwks"].__setitem__("value", "{...}"),
        lambda v: v["config"]["auth"]["oidc"].__setitem__("algorithm", "HS256"),
    ):
        values = _values(existingSecret="idp-jwks")
        mutate(values)
        with pytest.raises(helm.HelmValuesError):
            generate.render_chart(values)
