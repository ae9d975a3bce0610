"""The step registry: what binds a sheet row to code, and what a step gives back.

A suite (``testcases/kfr_steps.py`` for KFR) registers steps with :func:`StepRegistry.step`.
Each step declares the case ids it answers to in the bundled sheet and a *signature* —
the operation, the kind of identifier, the status and error code it is about, plus
words its description will use — so that a row of another sheet (other ids, order or
wording) can still be bound to it by what the row says (see ``conformance.binding``).

A step does the work and reports what the environment answered as an :class:`Actual`.
It does not decide pass or fail against its own idea of the answer: the engine compares
the ``Actual`` with the row's ``Expectation`` read from the sheet. Extra conditions that a
status code cannot express (e.g. "visible after ingestion") are :class:`Check` entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class Check:
    """A condition beyond status and error code, e.g. "the relationship is found for a period
    before its end". ``ok=False`` makes the case fail."""

    description: str
    ok: bool
    detail: str = ""


@dataclass
class Actual:
    """What the environment answered for the row's main request, as the judge reads it from
    the evidence."""

    status: int | None
    error_code: str | None = None
    summary: str = ""                    # Norwegian prose for the sheet's "Faktisk resultat"
    checks: list[Check] = field(default_factory=list)
    answered_by: str | None = None       # kfr | gateway | maskinporten | other | none
    gateway_401: bool = False            # the answer is the spec's ErrorResponse401
    environment: str | None = None       # why the environment kept the row from an answer
    identities: list[str] = field(default_factory=list)  # customer IDs the row used

    def check(self, description: str, ok: bool, detail: str = "") -> Actual:
        self.checks.append(Check(description, bool(ok), detail))
        return self


@dataclass(frozen=True)
class StepSignature:
    """What a row that this step can run talks about.

    ``operation``: token | add | end | lookup | history | batch | manual.
    ``subject``: fodselsnummer | d-nummer | orgnr | None (any).
    ``status`` / ``error_code``: the expectation this step is designed to provoke.
    ``keywords``: groups of alternative words (Norwegian/English); each group must have a
    word in the row's text, e.g. (("grense", "boundary"),).
    ``hints``: words and phrases that speak *for* this step when a row uses them (synonyms,
    paraphrases) but never against it when absent, e.g. ("igjen", "twice", "duplicate").
    """

    operation: str
    subject: str | None = None
    status: int | None = None
    error_code: str | None = None
    keywords: tuple[tuple[str, ...], ...] = ()
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class CoreConditions:
    """What the judge requires of a row the core system performed: the ``requests`` (role,
    operation) came through the recording gateway, with the bank's own token, following the
    contract; and the tool looked KFR's state up afterwards (a ``check…`` lookup)."""

    requests: tuple[tuple[str, str], ...] = ()

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.requests)


class StepFunc(Protocol):
    def __call__(self, ctx: Any) -> Actual: ...


@dataclass(frozen=True)
class Step:
    """``func`` acts (sends the row's requests, labelled with roles); ``judge`` decides from
    the recorded exchanges alone (see ``conformance.judge``). ``retryable``: the row may be
    tried again with fresh customers after the environment failed it."""

    name: str
    func: Callable[[Any], Any]
    signature: StepSignature
    case_ids: tuple[str, ...] = ()
    manual: bool = False
    title: str = ""
    judge: Callable[[Any], Actual] | None = None
    retryable: bool = True
    # Settings the step cannot run without (RunConfig fields, e.g. "alt_scope"). When one is
    # missing, the row is decided at start-up to be a manual procedure, described by ``without``.
    requires: tuple[str, ...] = ()
    without: str = ""
    # The core act (``ctx.core`` asks the bank's core system) and what the judge then requires.
    core: Callable[[Any], Any] | None = None
    core_conditions: CoreConditions | None = None


class StepRegistry:
    """An ordered set of steps with unique names."""

    def __init__(self) -> None:
        self._steps: dict[str, Step] = {}

    def add(self, step: Step) -> Step:
        if step.name in self._steps:
            raise ValueError(f"step {step.name!r} registered twice")
        self._steps[step.name] = step
        return step

    def step(
        self,
        name: str,
        *,
        operation: str,
        case_ids: Iterable[str] = (),
        subject: str | None = None,
        status: int | None = None,
        error_code: str | None = None,
        keywords: Iterable[Iterable[str]] = (),
        hints: Iterable[str] = (),
        manual: bool = False,
        title: str = "",
        retryable: bool = True,
        requires: Iterable[str] = (),
        without: str = "",
    ) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        def decorator(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.add(
                Step(
                    name=name,
                    func=func,
                    signature=StepSignature(
                        operation=operation,
                        subject=subject,
                        status=status,
                        error_code=error_code,
                        keywords=tuple(tuple(k.lower() for k in group) for group in keywords),
                        hints=tuple(h.lower() for h in hints),
                    ),
                    case_ids=tuple(case_ids),
                    manual=manual,
                    title=title or name,
                    retryable=retryable,
                    requires=tuple(requires),
                    without=without,
                )
            )
            return func

        return decorator

    def judge(self, name: str) -> Callable[[Callable[[Any], Actual]], Callable[[Any], Actual]]:
        """Register the judge of step ``name``: ``judge(evidence) -> Actual``."""

        def decorator(func: Callable[[Any], Actual]) -> Callable[[Any], Actual]:
            step = self._steps.get(name)
            if step is None:
                raise ValueError(f"judge for unknown step {name!r}")
            self._steps[name] = replace(step, judge=func)
            return func

        return decorator

    def core(self, name: str, **requests: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Register the core act of step ``name``: ``core(ctx)`` asks the core system
        (``ctx.core.open/close/batch``) for the ``requests`` (role=operation, e.g.
        ``main="add"``) and checks KFR's state with the tool. Rows of such a step are
        performed by the core system when a run has one (``--core-system``)."""
        if not requests:
            raise ValueError(f"core act for {name!r} names no request")

        def decorator(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
            step = self._steps.get(name)
            if step is None:
                raise ValueError(f"core act for unknown step {name!r}")
            conditions = CoreConditions(tuple((role.replace("_", "-"), op) for role, op in requests.items()))
            self._steps[name] = replace(step, core=func, core_conditions=conditions)
            return func

        return decorator

    def manual_step(self, name: str, **kwargs: Any) -> Step:
        """Register a row that a person must carry out and confirm (no code runs)."""

        def _manual(ctx: Any) -> Actual:  # never called: the engine handles manual rows
            raise RuntimeError("manual steps are not run")

        kwargs.setdefault("operation", "manual")
        self.step(name, manual=True, **kwargs)(_manual)
        return self._steps[name]

    def get(self, name: str) -> Step | None:
        return self._steps.get(name)

    def __iter__(self):
        return iter(self._steps.values())

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, name: object) -> bool:
        return name in self._steps
