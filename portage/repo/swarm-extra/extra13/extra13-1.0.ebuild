# Part of build-swarm's demo repository: no downloads, one small installed file.
EAPI=8
DESCRIPTION="build-swarm demo package extra13"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
DEPEND="swarm-libs/libc swarm-extra/extra07"
RDEPEND="${DEPEND}"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/extra13
	newins - extra13.txt <<<"swarm-extra/extra13-1.0"
}
