# Part of build-swarm's demo repository: a package Portage cannot plan (tests of
# `build-swarm plan` errors); not in the demo's set.
EAPI=8
DESCRIPTION="build-swarm demo package needs-missing (unresolvable on purpose)"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
DEPEND="swarm-base/nonexistent"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/needs-missing
	newins - needs-missing.txt <<<"swarm-broken/needs-missing-1.0"
}
