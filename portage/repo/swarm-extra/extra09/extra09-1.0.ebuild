# Part of build-swarm's demo repository: no downloads, one small installed file.
EAPI=8
DESCRIPTION="build-swarm demo package extra09"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
DEPEND="swarm-extra/extra05"
RDEPEND="${DEPEND}"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/extra09
	newins - extra09.txt <<<"swarm-extra/extra09-1.0"
}
