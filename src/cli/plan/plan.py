# build-swarm plan: runs Portage's own resolver (as `emerge --pretend ARGS` would, with
# this host's configuration from the environment) and prints the merge list as a
# build-swarm package set (JSON) on standard output: every package to build from source,
# with its build-time and run-time dependencies inside the list (the resolver's graph,
# not a re-parse of text), and estimate_s from this host's emerge.log where it has
# history. Errors: one line on standard error starting with "plan: ", exit 1.
# Shipped inside the build-swarm binary; run with the Python the host's emerge uses.
import json
import os
import re
import sys


def fail(message):
    sys.stderr.write("plan: " + " ".join(message.split()) + "\n")
    sys.exit(1)


def estimates(settings):
    """Mean wall time of the source builds of each category/name in emerge.log (the
    last five), as qlop/genlop read it."""
    log_dir = settings.get("EMERGE_LOG_DIR") or os.path.join(
        settings.get("EPREFIX", "/") or "/", "var", "log"
    )
    path = os.path.join(log_dir, "emerge.log")
    starts, compiled, runs = {}, set(), {}
    start_re = re.compile(r"^(\d+):\s+>>> emerge \((\d+) of (\d+)\) (\S+) to ")
    done_re = re.compile(r"^(\d+):\s+::: completed emerge \((\d+) of (\d+)\) (\S+) to ")
    comp_re = re.compile(r"^\d+:\s+=== \((\d+) of (\d+)\) Compiling/\w+ \(([^:]+)::")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = start_re.match(line)
                if m:
                    starts[m.group(4)] = int(m.group(1))
                    continue
                m = comp_re.match(line)
                if m:
                    compiled.add(m.group(3))
                    continue
                m = done_re.match(line)
                if m:
                    cpv = m.group(4)
                    t0 = starts.pop(cpv, None)
                    if t0 is not None and cpv in compiled:
                        compiled.discard(cpv)
                        import portage.versions

                        key = portage.versions.cpv_getkey(cpv)
                        if key:
                            runs.setdefault(key, []).append(int(m.group(1)) - t0)
    except OSError:
        return {}
    return {k: sum(v[-5:]) / len(v[-5:]) for k, v in runs.items() if v}


def main(args):
    try:
        import portage  # noqa: F401
        from _emerge.actions import load_emerge_config
        from _emerge.create_depgraph_params import create_depgraph_params
        from _emerge.depgraph import backtrack_depgraph
        from _emerge.main import parse_opts
        from _emerge.Package import Package
    except ImportError as e:
        fail(f"cannot import Portage with {sys.executable}: {e}")

    try:
        action, opts, files = parse_opts(list(args), silent=True)
    except SystemExit:
        fail(f"emerge does not accept the arguments {args}")
    if action is not None:
        fail(f"plan takes what emerge installs (atoms, sets, options), not --{action}")
    if not files:
        fail("nothing to plan: give atoms or sets, e.g. --emptytree @world")
    for o in ("--ask", "--fetchonly", "--fetch-all-uri", "--buildpkgonly"):
        opts.pop(o, None)
    opts["--pretend"] = True

    # Portage prints progress and problems on stdout: keep stdout for the set.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        emerge_config = load_emerge_config(action=action, args=files, opts=opts)
        settings = emerge_config.target_config.settings
        trees = emerge_config.trees
        params = create_depgraph_params(opts, action)
        success, depgraph, _ = backtrack_depgraph(
            settings, trees, opts, params, action, files, None
        )
        if not success:
            problems = []
            unsatisfied = getattr(depgraph._dynamic_config, "_unsatisfied_deps_for_display", [])
            for (atom, info) in unsatisfied[:3]:
                if isinstance(atom, tuple):
                    atom = atom[-1]
                parent = info.get("myparent") if isinstance(info, dict) else None
                by = getattr(parent, "cpv", None) or getattr(parent, "arg", None)
                if str(by) == str(atom):
                    by = None
                problems.append(
                    f"no package satisfies {atom}" + (f" (needed by {by})" if by else "")
                )
            dc = depgraph._dynamic_config
            for blocker in list(getattr(dc, "_unsatisfied_blockers_for_display", None) or ())[:3]:
                carriers = dc._blocker_parents.parent_nodes(blocker) if blocker in dc._blocker_parents else []
                names = ", ".join(sorted(str(c.cpv) for c in carriers)) or "a package"
                problems.append(f"{names} blocks {str(blocker.atom).lstrip('!')} ({blocker.atom})")
            depgraph.display_problems()
            fail(
                "Portage could not resolve "
                + " ".join(files)
                + (": " + "; ".join(problems) if problems else " (emerge --pretend says why)")
            )
        mergelist = depgraph.altlist()
        graph = depgraph._dynamic_config.digraph
    finally:
        sys.stdout = real_stdout

    unresolved = [p for p in mergelist if not isinstance(p, Package)]
    for b in unresolved:
        if getattr(b, "satisfied", True) is False:
            fail(f"{b.atom} blocks {b.parent.cpv if getattr(b, 'parent', None) else 'the plan'}")
    pkgs = [
        p
        for p in mergelist
        if isinstance(p, Package) and p.operation == "merge" and p.type_name == "ebuild"
    ]
    inset = set(pkgs)
    known = estimates(settings)
    out = []
    for p in pkgs:
        build, run = set(), set()
        for child in graph.child_nodes(p):
            if child is p or child not in inset:
                continue
            for prio in graph.nodes[p][0].get(child, []):
                if getattr(prio, "buildtime", False) or getattr(prio, "buildtime_slot_op", False):
                    build.add(str(child.cpv))
                if (
                    getattr(prio, "runtime", False)
                    or getattr(prio, "runtime_post", False)
                    or getattr(prio, "runtime_slot_op", False)
                ):
                    run.add(str(child.cpv))
        entry = {
            "atom": str(p.cpv),
            "deps": sorted(build | run),
            "build_deps": sorted(build),
            "run_deps": sorted(run),
        }
        est = known.get(p.cp)
        if est is not None:
            entry["estimate_s"] = round(float(est), 1)
        out.append(entry)
    json.dump({"packages": out}, real_stdout, indent=1)
    real_stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
