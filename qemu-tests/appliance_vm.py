#!/usr/bin/python3
"""Boot the appliance image under QEMU with OVMF, Secure Boot and swtpm.

Used by `make run` and by the boot tests. QEMU, OVMF and swtpm come from the
trixie tools tree (run through `mkosi sandbox`), the same versions that built
the image. The API's port 8480 is forwarded to a port on the host's
127.0.0.1; inside the guest the API also listens on the user-network
interface, added by an SMBIOS credential that only this launcher passes.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("APPLIANCE_CACHE", "/var/cache/appliance"))
TOOLS = CACHE / "tools-trixie"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
GUEST_API_PORT = 8480
KVM_PROBE_RESULT = Path("/run/appliance-kvm-probe")
# Console messages of OVMF and systemd-boot when Secure Boot rejects an image.
FIRMWARE_REJECTION = re.compile(r"Access [Dd]enied|Security Violation")


def sandbox(*command):
    """Return argv that runs COMMAND with /usr from the tools tree."""
    return [str(TOP / "image/mkosi"), f"--tools-tree={TOOLS}", "sandbox", *command]


def free_port(preferred=None):
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free TCP port on 127.0.0.1")


def kvm_works():
    """Return True when a short firmware boot under KVM prints to the console.

    /dev/kvm can exist and still fail on every guest ("KVM internal error ...
    emulation failure", after which QEMU hangs), so only a trial decides.
    The result is cached in /run until the host reboots.
    """
    if KVM_PROBE_RESULT.exists():
        return KVM_PROBE_RESULT.read_text().strip() == "yes"
    result = "no"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        with contextlib.ExitStack() as stack:
            work = Path(stack.enter_context(_tempdir("kvm-probe")))
            shutil.copy(TOOLS / "usr/share/OVMF/OVMF_VARS_4M.fd", work / "vars.fd")
            console = work / "console.log"
            proc = subprocess.Popen(
                sandbox("qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-cpu", "host",
                        "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
                        "-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                        "-drive", f"if=pflash,format=raw,file={work / 'vars.fd'}",
                        "-serial", f"file:{console}"),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                if console.exists() and console.stat().st_size > 0:
                    result = "yes"
                    break
                time.sleep(0.5)
            _kill_group(proc)
    KVM_PROBE_RESULT.write_text(result + "\n")
    return result == "yes"


@contextlib.contextmanager
def _tempdir(prefix):
    import tempfile
    path = tempfile.mkdtemp(prefix=f"appliance-{prefix}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _kill_group(proc):
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def send_qmp(qmp_path, command):
    """Send one QMP command to the QEMU listening on QMP_PATH."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(qmp_path))
        stream = s.makefile("rw")
        stream.readline()
        for cmd in ({"execute": "qmp_capabilities"}, {"execute": command}):
            stream.write(json.dumps(cmd) + "\n")
            stream.flush()
            stream.readline()


class ApplianceVM:
    """One QEMU guest with its own swtpm, variable store and disk overlay."""

    def __init__(self, image, ovmf_vars, state_dir, host_port=None, memory_mb=2048, cpus=2,
                 accel=None, fresh_disk=True, credentials=(), disk=None, models_disk=None):
        self.image = Path(image).resolve()
        self.ovmf_vars = Path(ovmf_vars).resolve()
        self.state = Path(state_dir).resolve()
        self.host_port = host_port or free_port()
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.accel = accel
        self.fresh_disk = fresh_disk
        # Extra "name=value" system credentials, passed as SMBIOS strings.
        self.credentials = list(credentials)
        # A disk file to boot as it is, instead of an overlay on IMAGE.
        self.disk_override = Path(disk).resolve() if disk else None
        # A tar archive of GGUF files that the agent imports into an empty
        # models folder; attached read-only as a virtio disk.
        self.models_disk = Path(models_disk).resolve() if models_disk else None
        self.console = self.state / "console.log"
        self.qmp_path = self.state / "qmp.sock"
        self.swtpm = None
        self.qemu = None
        self.started_at = None
        self.killed = False

    @property
    def api(self):
        return f"http://127.0.0.1:{self.host_port}"

    def start(self):
        self.state.mkdir(parents=True, exist_ok=True)
        if self.accel is None:
            self.accel = "kvm" if kvm_works() else "tcg"
        self._prepare_disk()
        self._start_swtpm()
        self._start_qemu()
        (self.state / "vm.json").write_text(json.dumps({
            "qemu_pid": self.qemu.pid, "swtpm_pid": self.swtpm.pid,
            "api": self.api, "console": str(self.console), "accel": self.accel}))

    def _prepare_disk(self):
        if self.disk_override is not None:
            self.disk = self.disk_override
            self._prepare_vars()
            return
        disk = self.state / "disk.qcow2"
        stamp = self.state / "disk.base"
        base = f"{self.image} {self.image.stat().st_mtime_ns}"
        if self.fresh_disk or not disk.exists() or not stamp.exists() or stamp.read_text() != base:
            disk.unlink(missing_ok=True)
            backing_format = "raw" if self.image.suffix == ".raw" else "qcow2"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_format,
                            "-b", str(self.image), str(disk)], check=True)
            stamp.write_text(base)
        self.disk = disk
        self._prepare_vars()

    def _prepare_vars(self):
        # The guest's copy of the variable store is replaced whenever the
        # built one changes (new keys), and only then, so the firmware's own
        # writes survive a reboot.
        vars_copy = self.state / "vars.fd"
        vars_stamp = self.state / "vars.base"
        vars_base = f"{self.ovmf_vars} {self.ovmf_vars.stat().st_mtime_ns}"
        if self.fresh_disk or not vars_copy.exists() or not vars_stamp.exists() \
                or vars_stamp.read_text() != vars_base:
            shutil.copy(self.ovmf_vars, vars_copy)
            vars_stamp.write_text(vars_base)

    def _start_swtpm(self):
        tpm_state = self.state / "tpm"
        tpm_state.mkdir(exist_ok=True)
        sock = self.state / "swtpm.sock"
        sock.unlink(missing_ok=True)
        self.swtpm = subprocess.Popen(
            sandbox("swtpm", "socket", "--tpm2", "--tpmstate", f"dir={tpm_state}",
                    "--ctrl", f"type=unixio,path={sock}", "--terminate",
                    "--log", f"file={self.state / 'swtpm.log'},level=1"),
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.swtpm.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"swtpm did not start; see {self.state / 'swtpm.log'}")
            time.sleep(0.2)

    def _start_qemu(self):
        cpu = "host" if self.accel == "kvm" else "max"
        credentials = [f"appliance.listen=0.0.0.0:{GUEST_API_PORT}", *self.credentials]
        disk_format = "raw" if self.disk.suffix == ".raw" else "qcow2"
        args = [
            "qemu-system-x86_64",
            "-machine", f"q35,smm=on,accel={self.accel}", "-cpu", cpu,
            "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-nodefaults", "-display", "none", "-no-user-config",
            "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-global", "ICH9-LPC.disable_s3=1",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={self.state / 'vars.fd'}",
            "-chardev", f"socket,id=chrtpm,path={self.state / 'swtpm.sock'}",
            "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-crb,tpmdev=tpm0",
            "-drive", f"if=none,id=disk0,format={disk_format},file={self.disk}",
            "-device", "virtio-blk-pci,drive=disk0,bootindex=1",
            *self._models_disk_args(),
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.host_port}-:{GUEST_API_PORT}",
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
            *[arg for credential in credentials
              for arg in ("-smbios", f"type=11,value=io.systemd.credential:{credential}")],
            "-serial", f"file:{self.console}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]
        self.console.unlink(missing_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        self.started_at = time.monotonic()
        self.qemu = subprocess.Popen(sandbox(*args), stdout=open(self.state / "qemu.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def _models_disk_args(self):
        if self.models_disk is None:
            return []
        # The guest's udev names it /dev/disk/by-id/virtio-appliance-models.
        return ["-drive", f"if=none,id=models,format=raw,readonly=on,file={self.models_disk}",
                "-device", "virtio-blk-pci,drive=models,serial=appliance-models"]

    def console_text(self):
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_console(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.console_text():
                return True
            if self.qemu.poll() is not None:
                return needle in self.console_text()
            time.sleep(1)
        return False

    def wait_for_console_re(self, pattern, timeout):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if regex.search(self.console_text()):
                return True
            if self.qemu.poll() is not None:
                break
            time.sleep(1)
        return bool(regex.search(self.console_text()))

    def get_json(self, path, timeout=5):
        with urllib.request.urlopen(self.api + path, timeout=timeout) as response:
            return json.loads(response.read())

    def wait_for_api(self, timeout):
        """Poll GET /api/vm/status; return seconds from QEMU start to the first response.

        Raises early when the console shows that the firmware rejected the
        boot loader or UKI, since the guest then never starts.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.qemu.poll() is not None:
                raise RuntimeError(f"QEMU exited with {self.qemu.returncode}; see {self.state / 'qemu.log'}")
            if FIRMWARE_REJECTION.search(self.console_text()):
                raise RuntimeError(
                    f"the firmware rejected the boot loader or UKI (Access Denied) in {self.console}: "
                    "the image was signed with other keys than the variable store enrolls; "
                    "rebuild both with `make image`, and delete the run's state folder")
            try:
                self.get_json("/api/vm/status", timeout=3)
                return time.monotonic() - self.started_at
            except (urllib.error.URLError, ConnectionError, OSError, json.JSONDecodeError):
                time.sleep(1)
        raise TimeoutError(f"API did not respond within {timeout} s; console log: {self.console}")

    def qmp(self, command):
        send_qmp(self.qmp_path, command)

    def kill(self):
        """Cut the power: end QEMU at once, with no shutdown in the guest."""
        for proc in (self.qemu, self.swtpm):
            if proc is not None:
                _kill_group(proc)
        (self.state / "vm.json").unlink(missing_ok=True)

    def stop(self, timeout=90):
        """Power the guest off through ACPI, then end QEMU and swtpm.

        The button is pressed again every few seconds: a press that arrives
        before systemd-logind listens is lost, and further presses are harmless.
        """
        if self.qemu is not None and self.qemu.poll() is None:
            deadline = time.monotonic() + timeout
            while self.qemu.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    self.qmp("system_powerdown")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.qemu.wait(timeout=10)
            if self.qemu.poll() is None:
                self.killed = True
                _kill_group(self.qemu)
        for proc in (self.qemu, self.swtpm):
            if proc is not None:
                _kill_group(proc)
        (self.state / "vm.json").unlink(missing_ok=True)


def running_qemu_pid(state):
    """Return the PID recorded in STATE/vm.json if that process still runs."""
    info = Path(state) / "vm.json"
    try:
        pid = json.loads(info.read_text())["qemu_pid"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"appliance: ignoring the unreadable record {info}: {err}", file=sys.stderr)
        return None
    return pid if _process_alive(pid) else None


def cmd_run(args):
    running = running_qemu_pid(args.state)
    if running is not None:
        print(f"appliance: an appliance from {args.state} is already running (process group {running}); "
              "stop it with `make stop` first", file=sys.stderr)
        return 1

    port = free_port(args.port)
    if port != args.port:
        print(f"appliance: port {args.port} on 127.0.0.1 is in use; forwarding the API to port {port} instead "
              "(choose one with `make run PORT=N`)")
    vm = ApplianceVM(args.image, args.ovmf_vars, args.state, host_port=port, fresh_disk=False,
                     models_disk=args.models_disk)

    def interrupt(signum, frame):
        # Only raise here: the main thread may be inside Popen.wait(), whose
        # lock a handler that waited on QEMU itself would deadlock on.
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)

    try:
        try:
            vm.start()
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            print(f"appliance: failed to start the guest: {err}", file=sys.stderr)
            return 1
        print(f"appliance: QEMU started ({vm.accel}) with OVMF in Secure Boot user mode and swtpm")
        print(f"appliance: console log: {vm.console}")
        print(f"appliance: the API will be at {vm.api}; waiting for it "
              "(under TCG about a minute on an idle host)...", flush=True)
        try:
            seconds = vm.wait_for_api(args.timeout)
        except (TimeoutError, RuntimeError) as err:
            print(f"appliance: {err}", file=sys.stderr)
            vm.stop(timeout=10)
            return 1
        print(f"appliance: API answering after {seconds:.0f} s at {vm.api}")
        print(f"appliance:   curl {vm.api}/api/vm/status")
        if vm.models_disk is not None:
            print(f"appliance:   curl {vm.api}/api/health   (200 once the model from "
                  f"{vm.models_disk.name} is imported and loaded)")
        print("appliance: Ctrl-C or `make stop` shuts it down cleanly", flush=True)
        vm.qemu.wait()
    except KeyboardInterrupt:
        print("\nappliance: shutting down the guest (ACPI power button)...", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        vm.stop()
    if vm.killed:
        print("appliance: the guest did not power off in time; QEMU was killed", file=sys.stderr)
        return 1
    print("appliance: guest powered off")
    return 0


def cmd_stop(args):
    state = Path(args.state)
    info = state / "vm.json"
    if not info.exists():
        print(f"appliance: no running appliance recorded in {state}")
        return 0

    pid = running_qemu_pid(state)
    if pid is None:
        info.unlink(missing_ok=True)
        print(f"appliance: no running appliance (removed the stale record {info})")
        return 0

    # Press the power button again every 10 s: a press before systemd-logind
    # listens is lost.
    qmp_path = state / "qmp.sock"
    deadline = time.monotonic() + 90
    while _process_alive(pid) and time.monotonic() < deadline:
        try:
            send_qmp(qmp_path, "system_powerdown")
        except OSError as err:
            if not _process_alive(pid):
                break
            print(f"appliance: cannot reach QEMU's QMP socket {qmp_path}: {err}", file=sys.stderr)
            return 1
        for _ in range(10):
            if not _process_alive(pid):
                break
            time.sleep(1)

    if _process_alive(pid):
        print(f"appliance: the guest did not power off within 90 s; QEMU still runs in process group {pid}",
              file=sys.stderr)
        return 1
    print("appliance: guest powered off")
    return 0


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="boot the appliance and wait until it is powered off")
    run.add_argument("--image", required=True, help="qcow2 disk image to boot (kept unchanged)")
    run.add_argument("--ovmf-vars", required=True, help="OVMF variable store with our keys enrolled")
    run.add_argument("--state", required=True, help="folder for the disk overlay, TPM state and logs")
    run.add_argument("--port", type=int, default=8480, help="host port for the API (default 8480, else any free)")
    run.add_argument("--timeout", type=int, default=600, help="seconds to wait for the API (default 600)")
    run.add_argument("--models-disk", help="tar archive of GGUF files to attach as the model import disk")
    stop = sub.add_parser("stop", help="power off the appliance started by `run`")
    stop.add_argument("--state", required=True)
    args = parser.parse_args()
    return cmd_run(args) if args.command == "run" else cmd_stop(args)


if __name__ == "__main__":
    sys.exit(main())
