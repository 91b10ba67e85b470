# Part of build-swarm's demo repository: a package Portage cannot plan (tests of
# `build-swarm plan` errors); not in the demo's set.
EAPI=8
DESCRIPTION="build-swarm demo package both (unresolvable on purpose)"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
RDEPEND="swarm-broken/blocker swarm-base/core"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/both
	newins - both.txt <<<"swarm-broken/both-1.0"
}
