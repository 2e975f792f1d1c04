"""Interoperability with a second, independent MCP client: the Python SDK (`mcp` 2.3.0).

    python interop.py BINARY legacy|2026-07-28

Drives `BINARY mcp` over stdio in one protocol mode, with a state directory of its own, and
checks each answer against what the CLI (`BINARY status ...`) says about the same state
directory. Prints one line per check and ends with `<mode>: N passed, N failed`; exits 1
when a check failed. run.sh creates the virtual environment and runs both modes.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import anyio
from mcp import Client, StdioServerParameters

TOOLS = ["start", "status", "list", "wait", "stop", "restart", "logs", "events", "rm", "prune"]
READ_ONLY = {"status", "list", "wait", "logs", "events"}
DESTRUCTIVE = {"stop", "rm", "prune"}

checks = {"passed": 0, "failed": 0}


def check(name: str, ok: bool, detail: object = "") -> None:
    checks["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"), flush=True)


class Cli:
    """The CLI on the same state directory."""

    def __init__(self, binary: str, env: dict[str, str]) -> None:
        self.binary, self.env = binary, env

    def run(self, *args: str) -> dict:
        done = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout or done.stderr)

    def data(self, command: str, payload: dict, *flags: str) -> dict:
        return self.run(command, *flags, json.dumps(payload))["data"]

    def error(self, command: str, payload: dict) -> dict:
        return self.run(command, json.dumps(payload))["error"]


async def main(binary: str, mode: str, state: str) -> None:
    # The SDK passes the server only a few variables of its own (HOME, PATH, ...): the state
    # directory must be given in `env`.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), "BACKGROUND_TASKS_HOME": state}
    cli = Cli(binary, env)
    params = StdioServerParameters(command=binary, args=["mcp"], env=env)
    async with Client(params, mode=mode) as client:
        expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
        check("protocol version", client.protocol_version == expected, client.protocol_version)
        if mode == "legacy":
            caps = client.server_capabilities
            check("tools capability (initialize)", caps is not None and caps.tools is not None, caps)
        else:
            # A pinned modern client synthesizes its discover result: ask the server itself.
            found = await client.session.send_discover("2026-07-28")
            check("tools capability (server/discover)", "tools" in found.get("capabilities", {}), found)
            check("2026-07-28 supported", "2026-07-28" in found.get("supportedVersions", []), found)

        listed = (await client.list_tools()).tools
        names = [t.name for t in listed]
        check("tool names", names == TOOLS, names)
        check("read-only annotations", all(bool(t.annotations.read_only_hint) == (t.name in READ_ONLY) for t in listed), [(t.name, t.annotations) for t in listed])
        check("destructive annotations", all(bool(t.annotations.destructive_hint) == (t.name in DESTRUCTIVE) for t in listed))
        check("input schemas are flat objects", all(t.input_schema.get("type") == "object" and not {"anyOf", "oneOf", "allOf"} & t.input_schema.keys() for t in listed))
        check("output schemas are objects", all((t.output_schema or {}).get("type") == "object" for t in listed))
        capabilities = cli.run("capabilities")["data"]["mcp_tools"]
        check("capabilities lists the same tools", [t["name"] for t in capabilities] == names, capabilities)

        # start with a ready condition and wait: answered once ready.
        tid = "web"
        r = await client.call_tool("start", {"id": tid, "shell": "echo booting; echo listening; sleep 1; echo later; exec sleep 30", "ready": {"log": "^listening$"}, "wait": True, "wait_timeout_s": 20})
        task = (r.structured_content or {}).get("task", {})
        check("start waits until ready", not r.is_error and task.get("ready") is True and task.get("status") == "running", r)
        check("the text is the compact JSON", r.content[0].text == json.dumps(r.structured_content, separators=(",", ":"), ensure_ascii=False), r.content[0].text[:200])
        status = cli.data("status", {"id": tid})
        check("the CLI sees the same task", status["task"]["pid"] == task.get("pid") and status["status"] == "running", status)

        r = await client.call_tool("status", {"id": tid})
        check("status agrees with the CLI", r.structured_content["task"]["pid"] == status["task"]["pid"], r)

        r = await client.call_tool("logs", {"id": tid})
        lines = r.structured_content["lines"]
        check("logs", lines[:2] == ["booting", "listening"], r)
        if lines == ["booting", "listening"]:
            r = await client.call_tool("logs", {"id": tid, "after": r.structured_content["next_cursor"], "follow": True, "timeout_s": 20})
            check("logs after a cursor, followed", r.structured_content["lines"] == ["later"], r)
        check("the CLI's logs agree", cli.data("logs", {"id": tid})["lines"] == ["booting", "listening", "later"])

        r = await client.call_tool("list", {"fields": ["id", "status"]})
        check("list agrees with the CLI", r.structured_content == {**cli.data("list", {"fields": ["id", "status"]})}, r)

        r = await client.call_tool("events", {"id": tid, "lines": 0})
        types = [f["type"] for f in r.structured_content["frames"]]
        check("events", not r.is_error and "task.status" in types, r)

        # A wait that runs out: TaskWaitTimedOut with the status and the log's cursor.
        r = await client.call_tool("wait", {"id": tid, "timeout_s": 0.5})
        e = r.structured_content
        cursor = cli.data("logs", {"id": tid, "lines": 0}, "--output", "inline")["next_cursor"]
        check("a wait that runs out", r.is_error and e["type"] == "TaskWaitTimedOut" and e["details"]["retryable"] is True, r)
        check("it says the status and the cursor", e["details"].get("status") == "running" and e["details"].get("cursor") == cursor, e)

        # Cancellation: an abandoned wait leaves the task running.
        with anyio.move_on_after(1.0):
            await client.call_tool("wait", {"id": tid, "timeout_s": 40})
        check("a cancelled wait leaves the task running", cli.data("status", {"id": tid})["status"] == "running")

        r = await client.call_tool("restart", {"id": tid, "wait": True})
        check("restart waits for the next run", not r.is_error and r.structured_content["task"]["run"] == 2 and r.structured_content["task"]["ready"] is True, r)
        check("the CLI sees run 2", cli.data("status", {"id": tid})["task"]["run"] == 2)

        r = await client.call_tool("stop", {"id": tid})
        check("stop", not r.is_error and r.structured_content["status"] == "killed", r)
        check("the CLI sees it killed", cli.data("status", {"id": tid})["status"] == "killed")

        # Progress notifications during a long wait, with the task's own progress.
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total, message))

        await client.call_tool("start", {"id": "steps", "shell": "echo 'step 1/4'; sleep 2; echo 'step 2/4'; sleep 3; echo 'step 4/4'"})
        r = await client.call_tool("wait", {"id": "steps", "timeout_s": 30}, progress_callback=on_progress)
        check("wait ends with the task", not r.is_error and r.structured_content["status"] == "exited", r)
        values = [p[0] for p in progress]
        check("progress notifications arrived", len(progress) >= 2, progress)
        check("progress only grows", values == sorted(set(values)), values)
        check("the message is the task's own progress", all(p[2] and p[2].startswith("steps running") for p in progress) and any("%" in (p[2] or "") for p in progress), progress)

        # Errors: the CLI's error object, as isError results.
        r = await client.call_tool("status", {"id": "no-such-task"})
        check("an unknown id is the CLI's TaskNotFound", r.is_error and r.structured_content == cli.error("status", {"id": "no-such-task"}), r)
        r = await client.call_tool("status", {"id": tid, "bogus": 1})
        check("an unknown field is CommandInputError with its path", r.is_error and r.structured_content["type"] == "CommandInputError" and r.structured_content["details"]["path"] == "bogus", r)
        r = await client.call_tool("wait", {"id": tid, "timeout_s": 51})
        check("a bound above 50 s is refused", r.is_error and r.structured_content["details"]["path"] == "timeout_s", r)

        r = await client.call_tool("rm", {"id": tid})
        check("rm", not r.is_error and r.structured_content["removed"] is True, r)
        check("the CLI no longer finds it", cli.error("status", {"id": tid})["type"] == "TaskNotFound")
        r = await client.call_tool("prune", {})
        check("prune", not r.is_error and r.structured_content["removed"] == ["steps"], r)
        check("the CLI lists nothing", cli.data("list", {})["total"] == 0)


if __name__ == "__main__":
    binary, mode = os.path.abspath(sys.argv[1]), sys.argv[2]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bt-mcp-") as root:
        state = os.path.join(root, "state")
        try:
            anyio.run(main, binary, mode, state)
        finally:
            # Whatever a failed check left running.
            cli = Cli(binary, {"PATH": os.environ.get("PATH", ""), "BACKGROUND_TASKS_HOME": state})
            for task in cli.run("list").get("data", {}).get("tasks", []):
                if task["status"] in ("running", "queued"):
                    cli.data("stop", {"id": task["id"], "grace_s": 0})
    label = "legacy" if mode == "legacy" else "modern"
    print(f"{label} mode took {time.monotonic() - started:.1f} s")
    print(f"{label}: {checks['passed']} passed, {checks['failed']} failed", flush=True)
    sys.exit(1 if checks["failed"] else 0)
