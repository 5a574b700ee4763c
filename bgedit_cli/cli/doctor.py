"""`bgedit doctor [--json]`: what this machine has -- auxiliary weight files, the default model bundle, torch,
CUDA and the CPU's vector/matrix units (bf16 is ~200x slower than fp32 without AVX-512-BF16/AMX). Always exits 0:
a missing file is reported with where to get it and where to put it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bgedit_cli.cli.common import JsonOpt, cli_command, print_json


@cli_command
def doctor(
    json_out: JsonOpt = False,
    verify: Annotated[bool, typer.Option("--verify", help="hash every weight file found and compare it with the "
                                                          "published hash (reads each file once)")] = False,
) -> None:
    """List auxiliary weight files, the default model bundle, torch/CUDA and CPU features.

    Example: bgedit doctor --verify
    """
    from bgedit_cli.pipelines.bundles import doctor_report

    report = doctor_report(verify=verify)
    if json_out:
        print_json(report)
    else:
        print_tables(report)


# ----------------------------------------------------------------------------------------------------------
# Render.


def _auto_precision(s: dict[str, Any]) -> str:
    b = s["cpu_bf16"]
    speed = f", bf16 convolutions {b['speedup']}x fp32" if b.get("speedup") else ""
    lines = [f"{s['auto_precision_cpu']} on CPU ({b['source']}{speed}); per command:"]
    for command, d in s["auto_precision_by_command"].items():  # runtime.auto_precision_by_command
        lines.append(f"  {command}: " + (d if isinstance(d, str) else
                                         f"{d['precision']} (measured fp32 {d['fp32_s']} s, bf16 {d['bf16_s']} s)"))
    return "\n".join(lines + ["  other commands: measured the first time they run with auto"])


def print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    console.print(f"bgedit {report['bgedit']}   BGEDIT_HOME={report['home']}")

    table = Table(title="Auxiliary weights", title_justify="left")
    for col in ("file", "name", "status", "place", "source / published hash"):
        table.add_column(col, overflow="fold")
    for w in report["weights"]:
        status = "[green]found[/]" if w["found"] else "[red]missing[/]"
        if w["hash_ok"] is not None:
            status += (f" [green]verified[/] ({w['verified']})" if w["hash_ok"] else
                       f" [red]hash mismatch[/] ({w['verified']})")
        place = w["found"] or (f"put it at {w['expected']}\n(`bgedit weights fetch {w['key']}` or "
                               f"{w['option']} FILE)")
        table.add_row(w["file"], w["key"], status, place, f"{w['source']}\n{w['published_hash']}")
    console.print(table)

    bundle = report["bundle"]
    table = Table(title=f"Default bundle {bundle['path']}" + ("" if bundle["exists"] else " (missing)"),
                  title_justify="left")
    for col in ("network", "status", "kind", "size"):
        table.add_column(col, overflow="fold")
    for f in bundle["files"]:
        status = ("[red]unreadable[/] " + f["error"]) if f["error"] else "[green]present[/]" if f["present"] else "-"
        size = f"{f['bytes'] / 2**20:.1f} MiB" if f["bytes"] is not None else ""
        table.add_row(f["name"], status, f["kind"] or "", size)
    console.print(table)

    s = report["system"]
    table = Table(title="System", title_justify="left", show_header=False)
    table.add_column("item")
    table.add_column("value", overflow="fold")
    gpus = ", ".join(s["cuda_devices"]) if s["cuda_available"] else "not available"
    flags = " ".join(f"{f}:{'yes' if v else 'no' if v is not None else '?'}" for f, v in s["cpu_flags"].items())
    for item, value in (("python", s["python"]), ("torch", s["torch"]), ("CUDA", f"{gpus} (CUDA {s['cuda_version']})"),
                        ("CPU", s["cpu"]), ("CPU flags", flags), ("CPU capability", s["cpu_capability"]),
                        ("oneDNN bf16", str(s["mkldnn_bf16"])),
                        ("--precision auto", _auto_precision(s)),
                        ("threads", f"{s['torch_threads']} torch / {s['cpu_count']} CPUs")):
        table.add_row(item, str(value))
    console.print(table)
