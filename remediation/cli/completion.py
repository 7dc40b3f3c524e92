"""Shell completion for `python -m remediation`, by argcomplete (what `az` itself completes with).

Bash completes a command line by its first word, which here is `python`, not a script: argcomplete's
`register-python-argcomplete NAME` registers a script or an executable, and its global completion finds a
`python -m module` only when the module's `__main__.py` carries its marker and calls it. So `python -m remediation
completion bash` prints a small function instead, registered for `python`, `python3` and `python3.N` (bash also
matches `.venv/bin/python` by its last part). On a line `<python> -m remediation ...` it asks the same interpreter
for the completions: `<python> -m remediation.cli.completion` (this module) builds the CLI's parser and runs
argcomplete over it, with `_ARGCOMPLETE=3` so that `python -m` are not taken for arguments. On any other python
line it hands over to bash-completion's own python completion if there is one, else to file names.

    eval "$(python -m remediation completion bash)"    # in ~/.bashrc to keep it
"""

from __future__ import annotations

import os
import sys

SHELLS = ("bash",)
PYTHONS = ("python", "python3", "python3.11", "python3.12", "python3.13", "python3.14")

BASH = r"""# bash completion for `python -m remediation` (argcomplete): eval "$(python -m remediation completion bash)"
_remediation_python_complete() {
    if [[ ${COMP_WORDS[1]-} == -m && ${COMP_WORDS[2]-} == remediation && ${COMP_CWORD} -ge 3 ]]; then
        local IFS=$'\013'
        COMPREPLY=($(IFS="$IFS" \
            COMP_LINE="$COMP_LINE" \
            COMP_POINT="$COMP_POINT" \
            COMP_TYPE="${COMP_TYPE-}" \
            _ARGCOMPLETE_COMP_WORDBREAKS="$COMP_WORDBREAKS" \
            _ARGCOMPLETE=3 \
            _ARGCOMPLETE_SHELL=bash \
            _ARGCOMPLETE_SUPPRESS_SPACE=1 \
            "$1" -m remediation.cli.completion 8>&1 9>&2 1>/dev/null 2>/dev/null </dev/null))
        if [[ $? != 0 ]]; then
            unset COMPREPLY
        elif [[ ${COMPREPLY-} =~ [=/:]$ ]]; then
            compopt -o nospace
        fi
        return 0
    fi
    # Any other python command line: bash-completion's python completion if it is loaded, else file names.
    if declare -F _comp_cmd_python >/dev/null; then
        _comp_cmd_python "$@"
    elif declare -F _python >/dev/null; then
        _python "$@"
    fi
}
complete -o default -o bashdefault -F _remediation_python_complete %(pythons)s
"""


def script(shell: str) -> str:
    """The shell code to evaluate."""
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell}: one of {', '.join(SHELLS)}")
    return BASH % {"pythons": " ".join(PYTHONS)}


def main() -> int:
    """Answer one completion request (argcomplete's protocol: the line in COMP_LINE, the answer on fd 8), or say
    how to use this."""
    if "_ARGCOMPLETE" not in os.environ:
        print('This answers the shell\'s completion requests; load it with: eval "$(python -m remediation '
              'completion bash)"', file=sys.stderr)
        return 2
    import argcomplete

    from remediation.__main__ import build_parser

    argcomplete.autocomplete(build_parser())  # exits once it has answered
    return 1


if __name__ == "__main__":
    sys.exit(main())
