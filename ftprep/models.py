"""The small typed objects that travel between tasks: references, hashes and counts, never the data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from ftprep.names import DEFAULT_PROJECT
from ftprep.numeric import DEFAULT_BOUND
from ftprep.openai_models import MIN_EXAMPLES


def _version() -> str:
    from ftprep import __version__

    return __version__


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetRef(_Model):
    """A dataset file identified by its content; ``path`` is where this run read it (not part of cache keys)."""

    LOCATION_FIELDS: ClassVar[tuple[str, ...]] = ("path",)  # see ftprep.caching.content_of

    path: str
    sha256: str
    format: str
    size_bytes: int
    records: int
    fields: tuple[str, ...]


class SplitConfig(_Model):
    """How training and validation examples are taken from the data (the flow's ``split`` parameter)."""

    train_size: int = Field(500, ge=MIN_EXAMPLES,
                            description=f"Training examples to write (OpenAI needs at least {MIN_EXAMPLES}).")
    validation_size: int = Field(50, ge=0, description=f"Validation examples to write: 0 (no validation file) or "
                                                       f"at least {MIN_EXAMPLES}.")
    train_offset: int = Field(0, ge=0, description="Position of the first training record.")
    validation_offset: int | None = Field(
        None,
        ge=0,
        description="Position of the first validation record. Default: right after the training records, "
        "or 0 when validation comes from a separate dataset.",
    )
    shuffle: bool = Field(False, description="Shuffle records (seeded) before taking the slices.")
    seed: int = Field(42, description="Seed for the shuffle.")

    @model_validator(mode="after")
    def _sizes(self) -> SplitConfig:
        from ftprep.errors import InputError

        if 0 < self.validation_size < MIN_EXAMPLES:
            raise InputError(
                f"split.validation_size (--validation-size) is {self.validation_size}: OpenAI needs at least "
                f"{MIN_EXAMPLES} examples in a validation file; give 0 (no validation file) or {MIN_EXAMPLES} or more"
            )
        return self


class Slice(_Model):
    """``count`` records from ``dataset`` starting at ``start``, in file order or in a seeded permutation."""

    dataset: DatasetRef
    start: int
    count: int
    seed: int | None = None


class SplitPlan(_Model):
    train: Slice
    validation: Slice | None


class Template(_Model):
    """Three message templates; ``{field}`` and ``{field:spec}`` name record fields."""

    name: str
    system: str | None = None
    user: str
    assistant: str
    nonnegative: tuple[str, ...] = ()
    target: str | None = None  # the field the model learns to predict (its distribution is drawn)
    # Numbers rendered with a numeric format spec must lie strictly inside (-bound, bound); a template file may
    # set its own (``bound = 1e15``).
    bound: float = Field(DEFAULT_BOUND, gt=0, allow_inf_nan=False,
                         description="Values at or beyond this magnitude are refused as absurd.")


class FormatPlan(_Model):
    template: Template
    fields: tuple[str, ...]
    preview: str


class WrittenFile(_Model):
    """A JSONL file as written: where it is, what it holds."""

    role: str  # "train" or "validation"
    path: str
    sha256: str
    bytes: int
    examples: int
    mtime_ns: int


class WrittenFiles(_Model):
    train: WrittenFile
    validation: WrittenFile | None
    out_dir: str

    def files(self) -> list[WrittenFile]:
        return [f for f in (self.train, self.validation) if f is not None]

    def public_path(self, role: str) -> str:
        """Where people look for the file: ``out/<name>``, a link into the current generation; on object storage
        (no links) the generation's file itself, as ``out/manifest.json`` names it."""
        from ftprep.names import FILE_NAMES
        from ftprep.storage import is_url

        if is_url(self.out_dir):
            return next(f.path for f in self.files() if f.role == role)
        return str(Path(self.out_dir) / FILE_NAMES[role])


class RemoteFile(_Model):
    """The file object OpenAI returned, reduced to what the next run needs."""

    id: str
    filename: str
    bytes: int
    status: str
    purpose: str
    created_at: int
    sha256: str
    examples: int
    role: str
    reused: bool = False


class PrepareResult(_Model):
    """What a prepare run leaves for the next fine-tuning run (persisted as JSON)."""

    dataset: DatasetRef
    split: SplitPlan
    template: str
    files: WrittenFiles
    remote: str | None = None
    validation: ValidationReport | None = None
    uploaded: tuple[RemoteFile, ...] = ()
    upload_skipped_reason: str | None = None
    project: str = DEFAULT_PROJECT  # the namespace of the Variable and artifacts it was published under (ftprep.names)
    ftprep_version: str = Field(default_factory=_version)

    def remote_file(self, role: str) -> RemoteFile | None:
        return next((f for f in self.uploaded if f.role == role), None)


class Finding(_Model):
    """One kind of problem in one file: a stable code, where it is, and what to do."""

    code: str
    severity: str  # "error" or "warning"
    file: str
    count: int
    lines: tuple[int, ...]  # the first few line numbers (1-based); 0 for the whole file
    message: str
    remedy: str


class TokenStats(_Model):
    examples: int
    min: int
    median: float
    p90: int
    max: int
    total: int
    billable: int
    over_limit: int
    estimated: int = 0  # examples whose count includes tools or calls, estimated as OpenAI's cookbook does
    histogram: tuple[tuple[float, int], ...] = ()  # (lower edge of a bin, examples in it): the report's picture
    sampled: int | None = None  # examples counted, when the statistics come from a sample (None: all counted)
    total_ci95: int | None = None  # half-width of the 95% confidence interval of ``total`` (sampled only)


class FileReport(_Model):
    path: str
    role: str  # "train", "validation" or "file"
    examples: int
    tokens: TokenStats | None = None


class ValidationReport(_Model):
    """What ``ftprep validate`` and the flow's validate task found, with token statistics and a cost estimate."""

    model: str
    encoding: str
    token_counts_estimated: str | None = None  # why counts are estimates, when they are
    tool_token_estimates: str | None = None  # set when tools/calls were counted: those counts are estimates
    files: tuple[FileReport, ...]
    findings: tuple[Finding, ...]
    epochs: int | None = None
    billable_tokens: int | None = None
    price_per_1m_tokens: float | None = None
    price_as_of: str | None = None
    estimated_cost_usd: float | None = None

    @property
    def errors(self) -> int:
        return sum(f.count for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(f.count for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.errors == 0


PrepareResult.model_rebuild()


class FineTuneConfig(_Model):
    """The job's settings (the fine-tune flow's ``job`` parameter); defaults are the course's."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    model: str = Field("gpt-4o-mini-2024-07-18", description="Base model to fine-tune.")
    seed: int | None = Field(42, description="Seed, for a repeatable job.")
    epochs: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, validation_alias=AliasChoices("epochs", "n_epochs"),
        description="Epochs, or auto to let OpenAI choose by the file's size (sent as n_epochs).")
    suffix: str | None = Field("pricer", max_length=64, description="Suffix of the fine-tuned model's name.")
    wandb_project: str | None = Field(
        None, description="Weights & Biases project to report to (e.g. gpt-pricer); needs W&B set up in OpenAI."
    )

    @field_validator("epochs", mode="before")
    @classmethod
    def _auto(cls, value: object) -> object:
        """Empty (None: a form left blank, or settings saved before "auto" existed) is "auto"."""
        return "auto" if value is None or value == "" else value


class FineTuneResult(_Model):
    """What a fine-tune run leaves: the job and the model it made (persisted as JSON)."""

    ftprep_version: str = Field(default_factory=_version)
    job_id: str
    status: str
    model: str
    training_file: str
    validation_file: str | None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    result_files: tuple[str, ...] = ()
    error: str | None = None
    reused: bool = False  # the job was started by another run (or an earlier one) for the same inputs
    started_by: str | None = None  # the flow run that created the job (from the job's metadata)
    project: str = DEFAULT_PROJECT  # the project whose Variables recorded it (ftprep.names)


class Answer(_Model):
    """One model reply, as kept in Prefect's result storage: its text, usage and latency."""

    text: str
    latency_seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Predictions(_Model):
    """One model's answers to the test items, in item order: None for an item that failed for good."""

    model: str
    answers: tuple[Answer | None, ...]
    errors: tuple[str | None, ...]  # the failure of each unanswered item (the server's message)
    refused: str | None = None  # the model itself was refused (unknown model, no access): no item was asked more


class EvalMetrics(_Model):
    """How close one model's (or the baseline's) prices are to the truth on a fixed set of items."""

    model: str
    kind: str = "model"  # "model", or "baseline" (no API call: a constant estimate)
    items: int  # items scored (answered)
    mae: float | None = None  # mean absolute error, dollars (None when no item was answered)
    rmsle: float | None = None  # root mean squared log error
    hit_rate: float | None = None  # share within $40 or 20% of the truth
    unparsed: int = 0  # replies with no number in them (counted as $0, as the course does)
    failed: int = 0  # items with no answer (failed for good): left out of the metrics
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # from the dated price table; None when the table does not know the model
    median_latency_seconds: float | None = None
    error: str | None = None  # why the model has no metrics (the server's message), or the first failed item's


class Comparison(_Model):
    """The comparison report: every model (and the baseline) on the same test items."""

    data: str
    items: int  # test items asked
    sample_seed: int | None = None
    rows: tuple[EvalMetrics, ...]
    job_id: str | None = None  # the fine-tuning job the models came from, when known
    baseline: str  # what the baseline is, or why it is left out
    trained_on: str | None = None  # the warning when the fine-tuned model was trained on some of the test items
    prices_as_of: str
    project: str = DEFAULT_PROJECT  # the project whose latest model and files were looked up (ftprep.names)
