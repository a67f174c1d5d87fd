"""Error text for the command line: one line that names the flag (``--method.lr``), what was expected
and what was given, from jsonargparse's (often multi-line) parse errors and from the errors that the
methods, data modules and forget specifications raise while they are built."""

from __future__ import annotations

import re

from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.forget import ForgetSpec
from lightning_unlearn.methods.base import UnlearningMethod


def _root_cause(message: str) -> str:
    """The class's own message out of jsonargparse's "Does not validate against any of the Union subtypes" wrapper."""
    causes = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ") and "NoneType" not in line]
    return causes[0] if "Union subtypes" in message and causes else message


_GROUPS: tuple[tuple[type, str], ...] = ((ForgetSpec, "--data.forget."), (UnlearningDataModule, "--data."),
                                         (UnlearningMethod, "--method."))


def _flag_prefix(err: BaseException) -> str | None:
    """The flag group (``--method.``, ``--data.``, ``--data.forget.``) of the object whose code raised ``err``.

    Read from the innermost frame, along the exception's chain, whose ``self`` is a method, a data
    module or a forget specification (their errors name the argument without the group).
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = None
        tb = current.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            found = next((prefix for cls, prefix in _GROUPS if isinstance(owner, cls)), found)
            tb = tb.tb_next
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _cli_message(err: BaseException) -> str:
    """``err``'s message for the command line: one line, the argument named by its flag (`lr` -> `--method.lr`)."""
    message = _root_cause(str(err)).strip()
    prefix = _flag_prefix(err)
    if prefix is not None:
        message = re.sub(r"^`(\w+)`", lambda m: f"`{prefix}{m.group(1)}`", message)
    return " ".join(message.split())


def _type_name(text: str) -> str:
    text = text.strip()
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    text = re.sub(r"typing\.Literal\[(.*)\]", r"one of [\1]", text)
    if text.startswith("dot import path string"):
        return "a class name or import path"
    return "None" if text == "NoneType" else text


def one_line_error(message: str) -> str:
    """jsonargparse's (often multi-line) parse error as one line naming the flag, what was expected and what was given.

    E.g. ``Parser key "method": ... Parser key "lr": Expected a <class 'float'>. Got value: nan`` (11 lines)
    becomes ```--method.lr`: expected float, got nan.``
    """
    lines = [line.strip() for line in message.strip().splitlines()]
    if not lines or not lines[0].startswith("Parser key"):
        required = re.match(r"the following arguments are required: (.+)", lines[0] if lines else "")
        if required:
            names = [f"`--{name.strip().split('.', 1)[-1]}`" for name in required.group(1).split(",")]
            return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} required."
        return " ".join(message.split())
    keys: list[str] = []
    cls = None
    expected: list[str] = []
    got = None
    for line in lines:
        item = line[2:] if line.startswith("- ") else line
        key = re.match(r'Parser key "([^"]+)":\s*(.*)', item)
        if key:
            keys.append(key.group(1))
            item = key.group(2)
            if not item:
                continue
        problem = re.match(r"Problem with given class_path '([^']+)'", item)
        if problem:
            cls = problem.group(1).rsplit(".", 1)[-1]
            continue
        option = re.match(r"Option '([^']+)' is not accepted", item)
        if option:
            return f"`--{'.'.join(keys)}.{option.group(1)}` is not an option of {cls or 'this class'}."
        inline = re.match(r"Expected a (.+?)\. Got value: (.*)", item)
        if inline:
            expected, got = [_type_name(inline.group(1))], inline.group(2)
            break
        alternative = re.match(r"Expected a (.+)", item)
        if alternative and not alternative.group(1).startswith("path but"):
            expected.append(_type_name(alternative.group(1).split(":")[0]))
            continue
        given = re.match(r"Given value: (.*)", item)
        if given and expected:
            got = given.group(1)
            break
        if item and not item.startswith(("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a path but")):
            expected, got = [], item  # another kind of message: keep it as it is
            break
    flag = f"`--{'.'.join(keys)}`"
    if not expected:
        return f"{flag}: {got}" if got else " ".join(message.split())
    wanted = " or ".join(dict.fromkeys(expected))
    return f"{flag}: expected {wanted}, got {got}."
