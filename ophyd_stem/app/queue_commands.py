"""The facility-mode commands: ``ophyd-stem run PLAN --queue ADDRESS`` (submit, follow to the
end) and ``ophyd-stem control ACT --queue ADDRESS`` (the operator's hand on a plan running in
a re-manager). The client they use is :mod:`ophyd_stem.app.queue`.
"""

from __future__ import annotations

import time
from typing import Any

from .queue import DEFAULT_ADDRESS, QueueClient, RemoteControl

__all__ = ["add_control_parser", "queue_run"]


def queue_run(args: Any, entry: Any) -> int:
    """``ophyd-stem run PLAN --queue ADDRESS``: submit the plan (and its scan settings) to a
    running re-manager, follow it to its end, and say where its runs are."""
    import sys

    if entry.queue_items is None:
        print(f"ophyd-stem: {entry.name} cannot be queued yet", file=sys.stderr)
        return 2
    items = entry.queue_items(args)
    with QueueClient(args.queue, user=args.operator, public_key=args.queue_key) as queue:
        queue.wait_until_ready(timeout=args.catalog_timeout, open_environment=False)
        uids = []
        submitted = time.monotonic()
        for name, plan_args, plan_kwargs in items:
            uids.append(queue.submit(name, *plan_args, start=False, **plan_kwargs))
            print(f"queued {name} ({uids[-1][:8]})", flush=True)
        queue.start()
        code = 0
        for (name, _, _), uid in zip(items, uids):
            result = queue.follow(
                uid,
                submitted=submitted,
                on_progress=lambda line, name=name: print(f"  {name}: {line}", flush=True),
            )
            for run in result.run_uids:
                print(f"run {run}")
                print(f"  plan        {name}, {result.exit_status} in {result.seconds:.1f} s")
                print(f"  look at it  ophyd-stem show {run[:8]}" + _catalog_hint(args))
            if not result.ok:
                print(f"{name} {result.exit_status}: {result.message}", file=sys.stderr)
                queue.discard(result)  # ours: do not leave it to run first next time
                for later in uids[uids.index(uid) + 1 :]:
                    queue.api.item_remove(uid=later)  # the rest of this experiment
                code = 4
                break
    return code


def _catalog_hint(args: Any) -> str:
    return f" --catalog {args.catalog}" if getattr(args, "catalog", None) else ""


def add_control_parser(commands: Any, command: Any) -> Any:
    """``ophyd-stem control ACT --queue ADDRESS``: the operator's hand on a plan that runs in a
    re-manager (queued with ``control="approve"`` or ``"free"``); ``command`` makes the
    sub-parser (``cli._command``)."""
    control = command(
        commands,
        "control",
        "approve, veto, redirect a plan running in a re-manager (facility mode)",
        "ophyd-stem control veto 0 --queue tcp://127.0.0.1:60615 --operator jane",
        description="The operator's acts on a plan queued with control='approve' or 'free', "
        "recorded in its run as in the console; then `resume`.",
    )
    control.add_argument(
        "act",
        choices=(
            "status", "approve", "veto", "add", "acquisition", "scalarizer", "pick-front",
            "mode", "pause", "resume", "abort",
        ),
        help="veto [I ...]; add X Y; acquisition NAME [key=value ...]; scalarizer SPEC; "
        "pick-front index=I|weight=W; mode free|approve; pause [now]",
    )  # fmt: skip
    control.add_argument("values", nargs="*", help="the act's values")
    control.add_argument("--queue", default=DEFAULT_ADDRESS, help="the re-manager's address")
    control.add_argument(
        "--queue-key",
        help="the re-manager's public key, for an encrypted channel (default: "
        "$QSERVER_ZMQ_PUBLIC_KEY or none)",
    )
    control.add_argument(
        "--operator",
        help="recorded as who acted (default: $OPHYD_STEM_OPERATOR, else the facility's)",
    )
    control.set_defaults(func=_cmd_control)
    return control


def _cmd_control(args: Any) -> int:
    import json
    import os

    who = args.operator or os.environ.get("OPHYD_STEM_OPERATOR")
    values = list(args.values)
    with QueueClient(args.queue, public_key=args.queue_key) as queue:
        hand = RemoteControl(queue, who=who)
        act = args.act
        if act == "status":
            result: Any = hand.status()
        elif act == "approve":
            result = hand.approve()
        elif act == "veto":
            result = hand.veto(*(int(v) for v in values))
        elif act == "add":
            if len(values) != 2:
                raise ValueError("add takes X Y (survey pixels)")
            result = hand.add(float(values[0]), float(values[1]))
        elif act == "acquisition":
            name = values[0] if values and "=" not in values[0] else None
            settings = dict(v.split("=", 1) for v in values if "=" in v)
            result = hand.set_acquisition(name, **{k: float(v) for k, v in settings.items()})
        elif act == "scalarizer":
            result = hand.set_scalarizer(values[0])
        elif act == "pick-front":
            settings = dict(v.split("=", 1) for v in values)
            result = hand.pick_front(
                index=int(settings["index"]) if "index" in settings else None,
                weight=float(settings["weight"]) if "weight" in settings else None,
            )
        elif act == "mode":
            result = hand.set_mode(values[0])
        elif act == "pause":
            hand.pause(immediate=bool(values and values[0] == "now"))
            result = "pausing"
        elif act == "resume":
            hand.resume()
            result = "resumed"
        else:
            hand.abort()
            result = "aborted"
    print(json.dumps(result, indent=1, default=str))
    return 0
