#!/usr/bin/env python3
"""Writes demo/packages-261.json: a Gentoo-like set of 261 packages with dependencies and
build-time estimates (toolchain first, then libraries, frameworks, desktop, applications).
Deterministic; run it again to regenerate the shipped file."""
import json, random

random.seed(261)
layers = [
    ("toolchain", [("sys-libs/glibc-2.38-r10", 1500), ("sys-devel/gcc-13.2.1_p20240113-r1", 3600),
                   ("sys-devel/binutils-2.41-r3", 600), ("sys-libs/zlib-1.3-r2", 40),
                   ("dev-lang/perl-5.38.2-r1", 500), ("dev-lang/python-3.12.1_p1", 900),
                   ("sys-devel/make-4.4.1-r1", 60), ("dev-build/cmake-3.27.9", 400),
                   ("dev-build/meson-1.3.1", 60), ("dev-build/ninja-1.11.1-r3", 60)]),
]
cats = {
    "base": ["dev-libs", "sys-apps", "app-arch", "net-misc", "sys-libs"],
    "libs": ["dev-libs", "media-libs", "x11-libs", "dev-qt", "net-libs"],
    "frameworks": ["kde-frameworks"],
    "desktop": ["kde-plasma", "x11-misc", "gnome-base"],
    "apps": ["kde-apps", "media-video", "app-office", "www-client", "app-editors", "games-strategy"],
}
words = ["core", "util", "base", "proto", "kit", "gui", "net", "sound", "image", "font", "config",
         "widgets", "archive", "crypt", "xml", "json", "svg", "gl", "dbus", "solid", "kio", "notify",
         "wallet", "plasma", "calendar", "player", "viewer", "editor", "term", "shell", "mail", "sync"]
sizes = {"base": 25, "libs": 80, "frameworks": 50, "desktop": 36, "apps": 60}
est = {"base": (20, 200), "libs": (30, 400), "frameworks": (60, 300), "desktop": (60, 500), "apps": (40, 1200)}
packages, by_layer = [], {}
tool = [a for a, _ in layers[0][1]]
for atom, e in layers[0][1]:
    deps = [] if atom.startswith("sys-libs/glibc") else ["sys-libs/glibc-2.38-r10"]
    if atom.startswith("sys-libs/glibc"):
        deps = []
    packages.append({"atom": atom, "deps": deps, "estimate_s": e})
by_layer["toolchain"] = tool
used = set(tool)
prev_layers = ["toolchain"]
for layer in ["base", "libs", "frameworks", "desktop", "apps"]:
    names = []
    while len(names) < sizes[layer]:
        cat = random.choice(cats[layer])
        prefix = {"kde-frameworks": "k", "kde-plasma": "plasma-", "kde-apps": "k"}.get(cat, "")
        name = prefix + random.choice(words) + random.choice(["", "", "2", "mm", "-tools", "-lib", "5", "-qt"])
        ver = f"{random.randint(0, 30)}.{random.randint(0, 20)}.{random.randint(0, 9)}"
        if random.random() < 0.2:
            ver += f"-r{random.randint(1, 4)}"
        atom = f"{cat}/{name}-{ver}"
        if any(u.startswith(f"{cat}/{name}-") for u in used):
            continue
        used.add(atom)
        pool = [a for l in prev_layers for a in by_layer[l]] + names
        k = min(len(pool), random.randint(1, 4))
        deps = sorted(set(random.sample(pool[-60:], k) + [random.choice(tool)]))
        lo, hi = est[layer]
        packages.append({"atom": atom, "deps": deps, "estimate_s": random.randint(lo, hi)})
        names.append(atom)
    by_layer[layer] = names
    prev_layers.append(layer)
assert len(packages) == 261, len(packages)
with open("demo/packages-261.json", "w") as f:
    json.dump({"packages": packages}, f, indent=1)
    f.write("\n")
