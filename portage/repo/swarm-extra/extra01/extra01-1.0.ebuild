# Part of build-swarm's demo repository: no downloads, one small installed file.
EAPI=8
DESCRIPTION="build-swarm demo package extra01"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
DEPEND="swarm-libs/libc swarm-base/core"
RDEPEND="${DEPEND}"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/extra01
	newins - extra01.txt <<<"swarm-extra/extra01-1.0"
}
