"""Domain input errors: one sentence per kind of problem, each bad name once, the echo capped."""
from __future__ import annotations

from webapp.services import domains


def parse(text, wildcard=True):
    return domains.parse(text, allow_wildcard=wildcard, max_names=100)


def test_a_sentence_typed_as_domains_is_one_error_naming_each_word_once():
    names, problems = parse("not a domain!! not a")
    assert names == []
    assert problems == ["not, a, domain!!: not valid domain names (letters, digits and hyphens; "
                        "a wildcard only as the first label, *.example.com)."]


def test_a_huge_input_comes_back_short():
    names, problems = parse("x" * 10_000)
    assert len(problems) == 1 and len(problems[0]) < 200 and problems[0].startswith("x" * 59 + "…: ")
    names, problems = parse(" ".join(f"bad_{i}!" for i in range(2000)))
    assert len(problems) == 1 and len(problems[0]) < 300 and "and 1995 more" in problems[0]


def test_each_kind_of_problem_is_named_once_and_good_names_are_kept():
    names, problems = parse("ok.example.com 192.0.2.1 co.uk *.w.example.com ok.example.com ok.example.com",
                            wildcard=False)
    assert names == ["ok.example.com"]
    assert problems == ["192.0.2.1: IP addresses cannot be validated by DNS-01; use a DNS name.",
                        "co.uk: a public suffix; no CA issues for it.",
                        "*.w.example.com: wildcards are not allowed by this CA profile "
                        "(turn on “Allow wildcard certificates” in the profile).",
                        "ok.example.com: listed twice."]
