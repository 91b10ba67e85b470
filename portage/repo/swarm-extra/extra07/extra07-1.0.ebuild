# Part of build-swarm's demo repository: no downloads, one small installed file.
EAPI=8
DESCRIPTION="build-swarm demo package extra07"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
DEPEND="swarm-libs/libc swarm-base/core"
RDEPEND="${DEPEND}"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/extra07
	newins - extra07.txt <<<"swarm-extra/extra07-1.0"
}
