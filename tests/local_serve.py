"""The real `switchboard` command in a temporary folder, for the local-mode operator tests.

Run as `python -m gateway.cli` with this checkout first on PYTHONPATH: the console script resolves
`gateway` through whatever checkout is installed editable, which need not be this one.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_OURS = ("SLACK_", "SWITCHBOARD_", "REDIS_URL", "PORT", "WEBCHAT_", "TWILIO_", "WHATSAPP_")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**env, "PYTHONPATH": str(ROOT), "SWITCHBOARD_LOG_FORMAT": "json", **extra}


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


def run_cli(args: list[str], cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(args), cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def history(folder: Path, rows: int = 40) -> Path:
    path = folder / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "mood"])
        w.writerows((f"message {i} was {'great' if i % 2 else 'awful'}", ["negative", "positive"][i % 2])
                    for i in range(rows))
    return path


TRAIN = ["train", "tickets.csv", "--text-column", "body", "--label-column", "mood", "--learner", "sentiment"]


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def wait_ready(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(self.log.read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_serve(cwd: Path, port: int, **env: str) -> Serve:
    """`port` is only where to look for /readyz: pass PORT in `env` or in cwd's `.env`."""
    log = cwd / f"serve-{port}.log"
    proc = subprocess.Popen(command(["serve"]), cwd=cwd, env=cli_env(**env), stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))
    return Serve(proc, port, log)
