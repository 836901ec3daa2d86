"""Catalogs: the bundled NFT1000 list with the paper's split, and validation of user rows."""

from collections import Counter

from nft_pipeline.catalog import load_catalog


def test_nft1000_catalog_has_the_papers_split():
    entries = load_catalog("nft1000")
    assert len(entries) == 1000
    assert all(e.problem is None for e in entries)
    assert Counter(e.split for e in entries) == {"train": 800, "val": 50, "test": 150}
    assert {e.source for e in entries} == {"alchemy"}
    assert len({e.slug for e in entries}) == 1000


def test_sample_catalog_names_the_three_bundled_collections():
    entries = load_catalog("samples")
    assert [e.slug for e in entries] == ["cryptopunks", "nouns", "mixedmedia"]
    assert all(e.source == "sample" and e.problem is None for e in entries)


def test_invalid_rows_are_kept_with_a_problem(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "slug,name,chain,contract,source\n"
        "good,Good,ethereum,0x" + "a" * 40 + ",alchemy\n"
        "Bad Slug,x,ethereum,0x" + "b" * 40 + ",alchemy\n"
        "short,x,ethereum,0x1234,alchemy\n"
        "who,x,ethereum,0x" + "c" * 40 + ",opensea\n"
        "good,Again,ethereum,0x" + "d" * 40 + ",alchemy\n"
    )
    problems = [e.problem for e in load_catalog(str(path))]
    assert problems[0] is None
    assert "invalid slug" in problems[1]
    assert "invalid contract" in problems[2]
    assert "unknown source" in problems[3]
    assert "duplicate slug" in problems[4]
