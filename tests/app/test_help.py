"""Every ``--help`` of the command: defaults shown, only the options that act there, a
one-line description and an example that really parses."""

from __future__ import annotations

import argparse
import shlex

import pytest

from ophyd_stem.app.cli import build_parser


def sub_parsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """Every (command line, parser) below ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from sub_parsers(sub, f"{prefix}{name} ")


PARSERS = dict(sub_parsers(build_parser()))
FLAGS = (argparse._StoreTrueAction, argparse._HelpAction, argparse._SubParsersAction)


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_option_says_its_default(command):
    parser = PARSERS[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or isinstance(action, FLAGS):
            continue
        # argparse prints nothing, not even the default, for an option without a help text
        assert action.help, f"ophyd-stem {command} {action.option_strings[0]} has no help"
        text = formatter._get_help_string(action)
        assert "default" in text, f"ophyd-stem {command} {action.option_strings[0]}: {text!r}"


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_has_a_description_and_an_example_that_parses(command):
    parser = PARSERS[command]
    assert parser.description
    assert "\n" not in parser.description.strip()[:80]
    assert parser.epilog
    assert parser.epilog.startswith("example:")
    example = parser.epilog.splitlines()[1].strip()
    words = shlex.split(example)
    assert words[0] == "ophyd-stem"
    assert " ".join(words[1:]).startswith(command)
    build_parser().parse_args(words[1:])  # the example is a valid command line


def test_options_appear_only_where_they_act():
    microscope_only = {"--bridge", "--server-key", "--client-key", "--operator", "--seed"}
    for command in ("runs", "show", "replay", "import-spool"):
        assert not options(PARSERS[command]) & microscope_only, command
        assert {"--catalog", "--api-key", "--data-dir"} <= options(PARSERS[command])
    # the twin's options where the twin runs: every plan of `run`
    twin = {"--sample", "--seed", "--noise-level", "--drift", "--damage", "--sample-param"}
    for command, parser in PARSERS.items():
        if command.startswith("run "):
            assert twin <= options(parser), command


def test_the_default_grid_is_what_help_says():
    help_text = PARSERS["run grid"].format_help()
    args = build_parser().parse_args(["run", "grid"])
    assert f"(default: {args.rows})" in help_text
    assert "--rows ROWS           spectra per column of the grid (default: 32)" in help_text


def test_device_and_compute_only_for_the_plans_they_act_on():
    """--device and --compute appear under `run PLAN` exactly when the plan's builder reads
    them (a grid or a survey has no agent to place: the options would do nothing)."""
    import inspect

    from ophyd_stem.app.registry import PLANS

    for name, entry in PLANS.items():
        source = inspect.getsource(entry.build)
        shown = options(PARSERS[f"run {name}"])
        for option in ("device", "compute"):
            reads = f"config.{option}" in source
            assert (f"--{option}" in shown) == reads, (name, option, reads)
    assert not {"--device", "--compute"} & options(PARSERS["run grid"])
    assert {"--device", "--compute"} <= options(PARSERS["run dcnn"])
    args = build_parser().parse_args(["run", "grid"])
    assert (args.device, args.compute) == (None, None)  # the configuration's own default


def test_options_read_from_the_environment_name_their_variable():
    """An option that $OPHYD_STEM_... or the config file also sets says so: a help that
    promised "the embedded catalog" while $OPHYD_STEM_CATALOG pointed elsewhere misled."""
    from ophyd_stem.app.config import ENV

    checked = 0
    for command, parser in PARSERS.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            name = next((s[2:].replace("-", "_") for s in action.option_strings), None)
            if name not in ENV or name == "sample":  # run's --sample: each plan's own
                continue
            text = formatter._get_help_string(action)
            assert f"${ENV[name]}" in text, f"ophyd-stem {command} {action.option_strings[0]}"
            checked += 1
    assert checked > 50


def test_a_run_that_is_not_there_is_said_as_a_sentence_with_what_to_do():
    """What ``get_run`` raises for a run the user typed reads as a sentence (no 'KeyError',
    no quotes around it), with where to look; an empty catalog says how to make a run;
    any other fault keeps its type's name."""
    from ophyd_stem.app.cli import _one_line

    assert _one_line(KeyError("no run with scan_id 7 in the catalog")) == (
        "no run with scan_id 7 in the catalog (`ophyd-stem runs` lists the runs)"
    )
    assert _one_line(KeyError("the catalog holds 0 run(s); there is no run -1")) == (
        "the catalog holds no runs yet; try `ophyd-stem run survey`"
    )
    assert _one_line(KeyError("scan-haadf")) == "KeyError: 'scan-haadf'"
    assert _one_line(ValueError("width must be <= 4096 px")) == (
        "ValueError: width must be <= 4096 px"
    )
    # a failed move: the device's own error, not the repr of the status that carried it
    from bluesky.utils import FailedStatus

    class OutOfRange(ValueError):
        pass

    cause = OutOfRange("width = 100000 px is outside the allowed range [8, 4096] px")
    with pytest.raises(FailedStatus) as failed:
        raise FailedStatus("<AsyncStatus, device: scan-width, task: <coroutine ...>>") from cause
    assert _one_line(failed.value) == f"OutOfRange: {cause}"
