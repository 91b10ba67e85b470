# Part of build-swarm's demo repository: no downloads, one small installed file.
EAPI=8
DESCRIPTION="build-swarm demo package app"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
IUSE="+extra"
DEPEND="swarm-libs/liba swarm-libs/libb"
RDEPEND="${DEPEND} extra? ( swarm-apps/tool )"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/app
	newins - app.txt <<<"swarm-apps/app-1.0"
}
