"""The tools' --help formatter (tools/evaluate.py, grid.py, plot_runs.py)."""

import argparse
import textwrap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help at the terminal's width: the description's prose rewrapped, its indented lines (commands) as written."""

    def _fill_text(self, text, width, indent):
        items = []  # [prose?, text]: "- " starts a bullet (its next lines indented by 2), other indented lines kept
        for line in text.strip("\n").split("\n"):
            last = items[-1] if items and items[-1][0] else [False, ""]
            if last[1].startswith("- ") and line.startswith("  ") and line[2:3].strip():
                last[1] += " " + line.strip()
            elif not line.strip() or line[0].isspace():
                items.append([False, line])
            elif last[0] and not line.startswith("- ") and not last[1].startswith("- "):
                last[1] += " " + line
            else:
                items.append([True, line])
        hang = {True: indent + "  ", False: indent}  # a bullet's lines hang under its text; flags are not split
        return "\n".join(textwrap.fill(s, width, initial_indent=indent, subsequent_indent=hang[s[:2] == "- "],
                                       break_on_hyphens=False) if prose else s for prose, s in items)  # fmt: skip
