# Part of build-swarm's demo repository: no downloads, one small installed file.
EAPI=8
DESCRIPTION="build-swarm demo package extra00"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
DEPEND="swarm-libs/libb"
RDEPEND="${DEPEND}"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/extra00
	newins - extra00.txt <<<"swarm-extra/extra00-1.0"
}
