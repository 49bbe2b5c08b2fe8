"""``mcslabel mount-options`` and ``mcslabel mount``: label a file system at mount time."""

from __future__ import annotations

import argparse
from typing import Any

from mcslabel.cli._common import EXIT_FAILED, EXIT_OK, add_json_flag, print_json
from mcslabel.cli.translate import add_translate_flags, untranslated

_OPTIONS = ("context", "fscontext", "defcontext", "rootcontext")


def _add_label_flags(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--level", metavar="LEVEL", help="the policy's container file type at LEVEL")
    which.add_argument("--context", metavar="CONTEXT", help="exactly this context")
    parser.add_argument("--type", metavar="TYPE", dest="file_type", help="replace the type")
    parser.add_argument("--read-only", action="store_true", help="use lxc_contexts' ro_file type")
    parser.add_argument(
        "--option",
        dest="options",
        action="append",
        choices=_OPTIONS,
        default=None,
        help="which option carries the context (repeatable; default context)",
    )
    parser.add_argument(
        "--policy-root", metavar="DIR", default=None, help="policy root for lxc_contexts"
    )
    parser.add_argument(
        "-t", "--fstype", default=None, help="file system type; checked against the rules"
    )
    add_translate_flags(parser, policy_root=False)


def register(subparsers: Any) -> None:
    options = subparsers.add_parser(
        "mount-options",
        help="print the quoted context= mount option for a level",
        description="Print the mount options that label a whole file system at a level"
        ' (context="user:role:type:level", quoted because the level\'s comma would'
        " otherwise split the option list), for mount -o or fstab. With --fstype, exit 2"
        " when that file system does not honour an option (defcontext= needs xattrs).",
    )
    _add_label_flags(options)
    add_json_flag(options)
    options.set_defaults(handler=_mount_options)

    mount = subparsers.add_parser(
        "mount",
        help="mount a device or image with context= instead of relabeling it (O(1))",
        description="Mount SOURCE (a block device, or an image file through a loop device)"
        " on TARGET with its files labeled by a context= option, then check"
        " /proc/self/mountinfo that the kernel applied it. A kernel without SELinux drops"
        " the option silently: then the volume is unmounted and the command exits 3 (or,"
        " with --fallback-relabel, the mounted tree is relabeled instead). Exit 0 when"
        " the volume is mounted and labeled.",
    )
    mount.add_argument("source", metavar="SOURCE")
    mount.add_argument("target", metavar="TARGET")
    _add_label_flags(mount)
    mount.add_argument(
        "-o",
        dest="mount_options",
        metavar="OPTS",
        action="append",
        default=[],
        help="other mount options (ro, noexec...; repeatable)",
    )
    mount.add_argument(
        "--fallback-relabel",
        action="store_true",
        help="when the context is not applied, relabel the mounted tree instead of failing",
    )
    mount.add_argument(
        "--journal", metavar="FILE", help="journal of the fallback relabel (new file)"
    )
    add_json_flag(mount)
    mount.set_defaults(handler=_mount)


def _contexts(args: argparse.Namespace) -> Any:
    from mcslabel.relabeling.context_mounts import MountContexts
    from mcslabel.relabeling.engine import target_context

    ctx = target_context(
        level=None if args.level is None else untranslated(args, args.level),
        context=None if args.context is None else untranslated(args, args.context),
        file_type=args.file_type,
        read_only=args.read_only,
        policy_root=args.policy_root,
    )
    contexts = MountContexts.for_context(ctx, tuple(args.options or ("context",)))
    if args.fstype is not None:
        contexts.check_fstype(args.fstype)
    return contexts


def _mount_options(args: argparse.Namespace) -> int:
    contexts = _contexts(args)
    if args.json:
        print_json(
            {
                "options": str(contexts),
                "contexts": {name: str(ctx) for name, ctx in contexts.items()},
            }
        )
    else:
        print(contexts)
    return EXIT_OK


def _mount(args: argparse.Namespace) -> int:
    from mcslabel.relabeling.volume_mounts import mount_volume

    contexts = _contexts(args)  # bad input fails here, before anything is mounted
    result = mount_volume(
        args.source,
        args.target,
        context=contexts.items()[0][1],
        options=tuple(name for name, _ in contexts.items()),
        fstype=args.fstype,
        mount_options=args.mount_options,
        fallback_relabel=args.fallback_relabel,
        journal=args.journal,
    )
    if args.json:
        print_json(result.to_dict())
    elif result.method == "context":
        print(f"mounted {result.source} on {result.target} ({result.fstype}) with {contexts}")
    else:
        assert result.relabel is not None
        print(
            f"mounted {result.source} on {result.target} ({result.fstype}) without its context"
            f" (not applied by the kernel); relabeled {result.relabel.changed} files to"
            f" {result.relabel.context}"
        )
    return EXIT_OK if result.ok else EXIT_FAILED


__all__ = [
    "register",
]
