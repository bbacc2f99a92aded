"""Debian root filesystems for container servers: built once, cached, shared read-only.

``prepare("debian-12")`` builds the image with ``debootstrap`` from Debian's archive and
adds what Hetzner's own images have (systemd, openssh-server, cloud-init, python3, sudo,
curl, ca-certificates, locales).  The result lives in the user cache directory
(``platformdirs.user_cache_dir("scherbelberg-dask")/emulator-images``, or
``$SCHERBELBERG_EMULATOR_IMAGES``); every server boots from it through an overlay, so
servers only store what they change.

Building is idempotent and safe when several processes prepare at once: a file lock
serialises them, the image is built in a staging directory and published with one
``rename``, and ``image.json`` (written last) marks it complete.

Three changes adapt the image to running on this host rather than on a Hetzner VM, each
forced by the emulation and documented in ``docs/emulator.md``:

- cloud-init reads only the NoCloud seed the emulator writes (Hetzner uses its metadata
  service) and leaves networking alone (servers share the host's network namespace);
- the image trusts the certificate authorities the host trusts, and points
  ``SSL_CERT_FILE`` at the system bundle, so that downloads from PyPI work behind this
  host's TLS-inspecting proxy;
- host keys and the machine id are removed, so that every server makes its own (as a
  Hetzner server does on first boot).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .host import require_host
from .nspawn import run_in_tree_command

logger = logging.getLogger(__name__)

__all__ = [
    "DEBIAN_IMAGES",
    "ImageNotPrepared",
    "PreparedImage",
    "cache_root",
    "find_image",
    "prepare",
    "prepare_command",
]

#: System images that boot as containers, and their Debian release.
DEBIAN_IMAGES = {"debian-12": "bookworm", "debian-13": "trixie"}
#: Bump when the recipe changes: older cached images are rebuilt.
RECIPE_VERSION = 1
#: Packages of the first stage (debootstrap) and the second (apt, which resolves the
#: virtual packages debootstrap cannot).
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "curl",
    "ca-certificates",
    "locales",
    "iproute2",
    "procps",
)
SECOND_STAGE_PACKAGES = ("cloud-init",)
#: Free disk space a build needs (the image is about 550 MB).
MIN_FREE_BYTES = 2 * 1024**3
_MIRROR_ENV = "SCHERBELBERG_DEBIAN_MIRROR"
_DEFAULT_MIRROR = "http://deb.debian.org/debian"
_HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_IMAGE_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
_CLOUD_CFG = """\
# scherbelberg-dask emulator: the emulator writes a NoCloud seed for each server, and
# servers share the host's network namespace, so cloud-init must not configure networking.
datasource_list: [NoCloud, None]
network: {config: disabled}
"""
_ENVIRONMENT = "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"

Progress = Callable[[str], None]


class ImageNotPrepared(LookupError):
    """A Debian image was asked for that has not been built on this host."""


def prepare_command(name: str) -> str:
    """The command that builds image ``name``."""
    return f"python -m scherbelberg_dask emulator prepare {name}"


def cache_root() -> Path:
    """Directory holding the prepared images."""
    override = os.environ.get("SCHERBELBERG_EMULATOR_IMAGES")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("scherbelberg-dask", appauthor=False)) / (
        "emulator-images"
    )


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """A built image.

    Attributes
    ----------
    name
        The Hetzner image name, e.g. ``debian-12``.
    rootfs
        The root file system (read-only lower layer of every server).
    info
        What ``image.json`` says: release, recipe version, build time, size.
    """

    name: str
    rootfs: Path
    info: dict[str, object]


def _image_dir(root: Path, name: str) -> Path:
    return root / name


def _read_info(directory: Path) -> dict[str, object] | None:
    try:
        info = json.loads((directory / "image.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("recipe") != RECIPE_VERSION:
        return None
    return info


def find_image(name: str, root: Path | None = None) -> PreparedImage:
    """The prepared image ``name``.

    Raises
    ------
    ImageNotPrepared
        It has not been built (or was built by an older recipe); the message names the
        command that builds it.
    """
    if name not in DEBIAN_IMAGES:
        raise ImageNotPrepared(f"image {name!r} cannot run here; known: {sorted(DEBIAN_IMAGES)}")
    directory = _image_dir(root or cache_root(), name)
    info = _read_info(directory)
    if info is None:
        raise ImageNotPrepared(
            f"image {name!r} is not prepared on this host: run `{prepare_command(name)}` "
            "(about 3 minutes, once)"
        )
    return PreparedImage(name, directory / "rootfs", info)


@contextlib.contextmanager
def _locked(path: Path, on_progress: Progress) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_progress("waiting for another process that is preparing this image ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], what: str, on_progress: Progress, log: Path) -> None:
    """Run a build step; its output goes to ``log``; debootstrap's ``I:`` lines show."""
    on_progress(what)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        last = 0.0
        for line in process.stdout:
            out.write(line)
            now = time.monotonic()
            if line.startswith("I: ") and now - last > 5.0:
                on_progress("  " + line[3:].strip())
                last = now
        status = process.wait()
    if status != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{what} failed (exit {status}); log {log}:\n{tail}")


def _certificates(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    parts = [part.strip() for part in text.split(marker)]
    return [
        part[part.index("-----BEGIN") :] + "\n" + marker + "\n"
        for part in parts
        if "-----BEGIN" in part
    ]


def _configure(rootfs: Path) -> int:
    """The emulator's adaptations (see the module docstring); returns host CAs added."""
    (rootfs / "etc/cloud/cloud.cfg.d/90-scherbelberg-emulator.cfg").write_text(_CLOUD_CFG)
    with open(rootfs / "etc/environment", "a") as env:
        env.write(_ENVIRONMENT)
    locale_gen = rootfs / "etc/locale.gen"
    lines = locale_gen.read_text().splitlines()
    locale_gen.write_text(
        "\n".join(
            "en_US.UTF-8 UTF-8" if line.strip() == "# en_US.UTF-8 UTF-8" else line for line in lines
        )
        + "\n"
    )
    added = 0
    if _HOST_BUNDLE.is_file():
        known = set(_certificates((rootfs / _IMAGE_BUNDLE).read_text()))
        target = rootfs / "usr/local/share/ca-certificates/scherbelberg-emulator-host"
        target.mkdir(parents=True, exist_ok=True)
        for cert in _certificates(_HOST_BUNDLE.read_text()):
            if cert not in known:
                added += 1
                (target / f"host-{added}.crt").write_text(cert)
    return added


def _finish(rootfs: Path) -> None:
    """Leave no per-machine identity in the image (every server makes its own)."""
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (rootfs / "var/lib/dbus/machine-id").unlink()
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)


def _size(path: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _build(name: str, staging: Path, on_progress: Progress) -> dict[str, object]:
    release = DEBIAN_IMAGES[name]
    rootfs = staging / "rootfs"
    log = staging / "build.log"
    mirror = os.environ.get(_MIRROR_ENV, _DEFAULT_MIRROR)
    started = time.monotonic()
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            release,
            str(rootfs),
            mirror,
        ],
        f"[1/4] debootstrap {release} from {mirror} (about 2 minutes) ...",
        on_progress,
        log,
    )
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    _run(
        run_in_tree_command(
            rootfs,
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *SECOND_STAGE_PACKAGES],
            apt_env,
        ),
        f"[2/4] installing {', '.join(SECOND_STAGE_PACKAGES)} ...",
        on_progress,
        log,
    )
    added = _configure(rootfs)
    _run(
        run_in_tree_command(
            rootfs,
            [
                "/bin/sh",
                "-c",
                "locale-gen && update-locale LANG=en_US.UTF-8"
                " && update-ca-certificates && apt-get clean",
            ],
            apt_env,
        ),
        f"[3/4] locales and certificates ({added} host authorities added) ...",
        on_progress,
        log,
    )
    on_progress("[4/4] removing host keys and machine id ...")
    _finish(rootfs)
    return {
        "name": name,
        "release": release,
        "recipe": RECIPE_VERSION,
        "mirror": mirror,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1),
        "size_bytes": _size(rootfs),
        "packages": [*BASE_PACKAGES, *SECOND_STAGE_PACKAGES],
    }


def prepare(
    name: str, on_progress: Progress | None = None, root: Path | None = None
) -> PreparedImage:
    """Build image ``name`` unless it is already prepared; return it.

    Parameters
    ----------
    name
        ``debian-12`` or ``debian-13``.
    on_progress
        Called with a line for each step (default: log at INFO).
    root
        Cache directory (default :func:`cache_root`).

    Raises
    ------
    ValueError
        ``name`` is not a Debian image the emulator can boot.
    RuntimeError
        The host cannot run containers (the message says what is missing), disk space is
        short, or a build step failed (the message carries the end of its log).
    """
    if name not in DEBIAN_IMAGES:
        raise ValueError(
            f"cannot prepare {name!r}: choose one of {', '.join(sorted(DEBIAN_IMAGES))}"
        )
    report: Progress = on_progress or (lambda line: logger.info("%s: %s", name, line))
    root = root or cache_root()
    with contextlib.suppress(ImageNotPrepared):
        image = find_image(name, root)
        report(f"already prepared ({image.rootfs})")
        return image
    require_host()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{name}.lock", report):
        with contextlib.suppress(ImageNotPrepared):
            image = find_image(name, root)  # another process built it while we waited
            report(f"prepared by another process ({image.rootfs})")
            return image
        free = shutil.disk_usage(root).free
        if free < MIN_FREE_BYTES:
            raise RuntimeError(
                f"not enough disk space to build {name} in {root}: {free / 1024**3:.1f} GiB "
                f"free, {MIN_FREE_BYTES / 1024**3:.0f} GiB needed (set "
                "SCHERBELBERG_EMULATOR_IMAGES to a directory with more room)"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=root))
        try:
            info = _build(name, staging, report)
            (staging / "image.json").write_text(json.dumps(info, indent=1))
            final = _image_dir(root, name)
            if final.exists():  # an image of an older recipe
                old = final.with_name(f".{name}.old-{os.getpid()}")
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    image = find_image(name, root)
    size = info.get("size_bytes")
    megabytes = f"{size / 1e6:.0f} MB, " if isinstance(size, int) else ""
    report(f"ready: {image.rootfs} ({megabytes}{info['build_seconds']} s)")
    return image
