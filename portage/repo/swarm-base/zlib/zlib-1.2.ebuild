# Part of build-swarm's demo repository: no downloads, one small installed file.
EAPI=8
DESCRIPTION="build-swarm demo package zlib"
HOMEPAGE="https://example.org/build-swarm"
LICENSE="MIT"
SLOT="0/1"
KEYWORDS="amd64"
S="${WORKDIR}"

src_install() {
	insinto /usr/share/zlib
	newins - zlib.txt <<<"swarm-base/zlib-1.2"
}
