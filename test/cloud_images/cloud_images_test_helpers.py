"""Readers for the image definitions: a structural HCL parser, Dockerfile instructions, pins.

The HCL reader checks what a syntax error would break (delimiters, strings, comments, block and
attribute shapes, duplicate attributes) and keeps each attribute's expression as source text. It
is no evaluator; `packer validate` or python-hcl2 run on top of it where they are installed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "cloud_images"
INSTALL_SH = IMAGES / "scripts" / "install.sh"
PACKER = IMAGES / "packer" / "gpu-ros2.pkr.hcl"
DOCKERFILE = IMAGES / "docker" / "Dockerfile"
DOCKERIGNORE = IMAGES / "docker" / "Dockerfile.dockerignore"
RENDER_PY = IMAGES / "render.py"
REQUIREMENTS = ROOT / "requirements.txt"
# ROS distro -> the Ubuntu release its binary packages are built for.
DISTROS = {"humble": "jammy", "jazzy": "noble"}


def user_data_path(distro: str) -> Path:
    return IMAGES / "cloud-init" / f"user-data-{distro}.yaml"


# ---------------------------------------------------------------------------------------------
# Pins
# ---------------------------------------------------------------------------------------------

_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)")


def normalize(name: str) -> str:
    """PEP 503 name normalization, so `Eclipse_Zenoh` and `eclipse-zenoh` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pin(text: str, where: str) -> tuple[str, str]:
    """``("name[; marker]", version)`` of one ``name==version[; marker]`` requirement."""
    requirement, _, marker = text.partition(";")
    match = _PIN.fullmatch(requirement.strip())
    assert match, f"{where}: {text!r} is not an exact name==version pin (with an optional marker)"
    key = normalize(match[1]) + (f"; {' '.join(marker.split())}" if marker.strip() else "")
    return key, match[2]


def requirement_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``name[; marker] -> version`` from a requirements file whose every requirement is
    ``name==version``, optionally with an environment marker (``numpy==2.2.6; python_version <
    "3.11"``)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            key, version = _pin(line, f"{path.name}:{number}")
            pins[key] = version
    return pins


def allowed_versions(pins: dict[str, str]) -> dict[str, set[str]]:
    """``name -> versions`` pinned for it under any marker."""
    found: dict[str, set[str]] = {}
    for key, version in pins.items():
        found.setdefault(key.split(";")[0], set()).add(version)
    return found


def install_sh_pins(text: str) -> dict[str, str]:
    """The ``PINS=( ... )`` array of install.sh as ``name[; marker] -> version`` (bash quoting)."""
    match = re.search(r"^PINS=\(\n(.*?)^\)", text, re.MULTILINE | re.DOTALL)
    assert match, "install.sh has no PINS=( ... ) array"
    return dict(_pin(item, "install.sh PINS") for item in shlex.split(match[1]))


def pins_in(text: str) -> list[tuple[str, str]]:
    """Every ``name==version`` written anywhere in ``text``."""
    return [(normalize(name), version) for name, version in _PIN.findall(text)]


# ---------------------------------------------------------------------------------------------
# HCL (structure only)
# ---------------------------------------------------------------------------------------------


class HclError(ValueError):
    """The text is not well-formed HCL."""


@dataclass
class Block:
    type: str
    labels: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)  # name -> expression source
    blocks: list[Block] = field(default_factory=list)

    def children(self, type_: str, *labels: str) -> list[Block]:
        return [b for b in self.blocks if b.type == type_ and b.labels[: len(labels)] == labels]

    def only(self, type_: str, *labels: str) -> Block:
        found = self.children(type_, *labels)
        assert len(found) == 1, f"expected one {type_} {labels} block, found {len(found)}"
        return found[0]

    def walk(self) -> list[Block]:
        return [self, *(b for child in self.blocks for b in child.walk())]


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, string, number, newline, op, open, close
    text: str
    start: int
    end: int


_CLOSERS = {"{": "}", "[": "]", "(": ")"}
_OPERATORS = ("==", "!=", "<=", ">=", "=>", "&&", "||", "...")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _scan_template(text: str, pos: int) -> int:
    """Skip a quoted string starting after its opening quote; return the index after the close."""
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2
        elif char == '"':
            return pos + 1
        elif char == "\n":
            break
        elif text.startswith(("${", "%{"), pos):
            pos = _scan_interpolation(text, pos + 2)
        else:
            pos += 1
    raise HclError(f"line {_line(text, pos)}: unterminated string")


def _scan_interpolation(text: str, pos: int) -> int:
    """Skip a ``${ ... }`` body (which may hold strings and braces); return the index after ``}``."""
    depth = 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            pos = _scan_template(text, pos + 1)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    raise HclError(f"line {_line(text, pos)}: unterminated ${{...}} interpolation")


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        start = pos
        if char == "\n":
            tokens.append(_Token("newline", char, pos, pos + 1))
            pos += 1
        elif char in " \t\r":
            pos += 1
        elif char == "#" or text.startswith("//", pos):
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        elif text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            if end < 0:
                raise HclError(f"line {_line(text, pos)}: unterminated /* comment")
            pos = end + 2
        elif text.startswith("<<", pos):
            raise HclError(f"line {_line(text, pos)}: heredocs are outside what this checker reads")
        elif char == '"':
            pos = _scan_template(text, pos + 1)
            tokens.append(_Token("string", text[start + 1 : pos - 1], start, pos))
        elif char.isalpha() or char == "_":
            match = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*").match(text, pos)
            assert match
            pos = match.end()
            tokens.append(_Token("ident", match[0], start, pos))
        elif char.isdigit():
            match = re.compile(r"[0-9][0-9.eE]*").match(text, pos)
            assert match
            pos = match.end()
            tokens.append(_Token("number", match[0], start, pos))
        elif char in _CLOSERS:
            tokens.append(_Token("open", char, pos, pos + 1))
            pos += 1
        elif char in "}])":
            tokens.append(_Token("close", char, pos, pos + 1))
            pos += 1
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, pos)), char)
            pos += len(op)
            tokens.append(_Token("op", op, start, pos))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def error(self, message: str) -> HclError:
        pos = self.tokens[self.i].start if self.i < len(self.tokens) else len(self.text)
        return HclError(f"line {_line(self.text, pos)}: {message}")

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def body(self, block: Block, *, nested: bool) -> Block:
        while True:
            token = self.peek()
            if token is None:
                if nested:
                    raise self.error(f"block {block.type} {block.labels} is missing its closing }}")
                return block
            if token.kind == "newline":
                self.i += 1
                continue
            if token.text == "}" and token.kind == "close":
                if not nested:
                    raise self.error("unexpected }")
                self.i += 1
                return block
            if token.kind != "ident":
                raise self.error(f"expected an attribute or block name, got {token.text!r}")
            self.i += 1
            self.item(block, token.text)

    def item(self, block: Block, name: str) -> None:
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == "=":
            self.i += 1
            if name in block.attributes:
                raise self.error(f"attribute {name!r} set twice in {block.type} {block.labels}")
            block.attributes[name] = self.expression()
            return
        labels: list[str] = []
        while token is not None and token.kind in ("string", "ident"):
            labels.append(token.text)
            self.i += 1
            token = self.peek()
        if token is None or token.text != "{":
            raise self.error(f"{name!r} is neither an attribute (=) nor a block ({{)")
        self.i += 1
        block.blocks.append(self.body(Block(name, tuple(labels)), nested=True))
        after = self.peek()
        if after is not None and after.kind != "newline" and after.text != "}":
            raise self.error(f"block {name} must end its line after }}")

    def expression(self) -> str:
        stack: list[str] = []
        first = self.peek()
        if first is None or first.kind == "newline":
            raise self.error("attribute without a value")
        while (token := self.peek()) is not None:
            if not stack and token.kind in {"newline", "close"}:
                break
            if token.kind == "open":
                stack.append(_CLOSERS[token.text])
            elif token.kind == "close" and token.text != stack.pop():
                raise self.error(f"mismatched {token.text!r}")
            self.i += 1
        if stack:
            raise self.error(f"unclosed {stack[-1]!r} in an expression")
        return self.text[first.start : self.tokens[self.i - 1].end].strip()


def parse_hcl(text: str) -> Block:
    """Parse HCL2 native syntax into blocks and attribute source text; raise HclError if malformed."""
    return _Parser(text).body(Block("<file>"), nested=False)


def hcl_object(expression: str) -> dict[str, str]:
    """A flat ``{ key = value ... }`` object expression as ``key -> value source`` (keys unquoted)."""
    inner = expression.strip()
    assert inner.startswith("{"), f"not an object: {expression!r}"
    assert inner.endswith("}"), f"not an object: {expression!r}"
    entries = re.findall(r'^\s*("[^"]+"|[A-Za-z_][\w-]*)\s*=\s*(.+?)\s*,?\s*$', inner[1:-1], re.MULTILINE)
    return {key.strip('"'): value for key, value in entries}


def hcl_string(expression: str) -> str:
    """The content of a quoted-string expression."""
    assert expression.startswith('"'), f"not a string: {expression!r}"
    assert expression.endswith('"'), f"not a string: {expression!r}"
    return expression[1:-1]


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions
