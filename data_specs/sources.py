"""Source specs: where documents come from and how each kind is read.

Every source takes `paths` (globs and any fsspec URL: local, https, s3, gs) except `hf_dataset`,
which names a Hugging Face dataset. Compression is detected from content, not from the file name.
Each kind carries its own default quality filters: web rules are for web text, and a book is not a
bad document because it is long.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from data_specs._base import StrictModel
from data_specs.clean import C4Spec, FilterSetSpec, FineWebSpec, GopherQualitySpec, GopherRepetitionSpec

SourceKind = Literal["wikipedia", "common_crawl", "books", "hf_dataset"]

DEFAULT_SPLIT_BYTES = 256 * 1024 * 1024


def _wikipedia_filters() -> FilterSetSpec:
    # Encyclopedic prose: lists, tables-turned-text and short stubs trip the web rules (C4's
    # terminal-punctuation and curly-bracket rules, FineWeb's short-line rule), so only Gopher runs, with
    # lmpipe's named option that leaves punctuation tokens out of the letter ratio: with datatrove's ratio,
    # 17 of the 106 articles of the enwiki sample (citations, dates, lists) fall under 0.8; with it, none.
    return FilterSetSpec(
        gopher_quality=GopherQualitySpec(max_words=None, alpha_ratio_ignores_punctuation=True),
        c4=C4Spec(enabled=False),
        fineweb=FineWebSpec(enabled=False),
    )


def _books_filters() -> FilterSetSpec:
    # Books are long (Moby-Dick has 215k words) and verse repeats lines by design: keep the
    # document-level quality checks, drop the length cap and the web rules. Dialogue punctuation counts
    # against Gopher's letter ratio as datatrove computes it (Alice in Wonderland: 0.798 < 0.8), so books
    # use lmpipe's named option that leaves punctuation tokens out of that ratio.
    return FilterSetSpec(
        gopher_quality=GopherQualitySpec(max_words=None, alpha_ratio_ignores_punctuation=True),
        gopher_repetition=GopherRepetitionSpec(enabled=False),
        c4=C4Spec(enabled=False),
        fineweb=FineWebSpec(enabled=False),
    )


class _SourceBase(StrictModel):
    languages: tuple[str, ...] | None = Field(
        None, description="Languages to keep for this source; null = the clean.language.languages list."
    )
    max_documents: int | None = Field(
        None, ge=1, description="Read at most this many documents per input (smoke runs); null = all."
    )


class WikipediaSource(_SourceBase):
    """A MediaWiki XML export: `pages-articles` (plain or multistream), bz2/xz/gz/zstd or uncompressed."""

    kind: Literal["wikipedia"]
    paths: list[str] = Field(min_length=1, description="Globs or fsspec URLs of dump files.")
    namespaces: tuple[int, ...] = Field((0,), description="Page namespaces to keep (0 = articles).")
    keep_redirects: bool = Field(False, description="Keep redirect pages (dropped as wikipedia/redirect).")
    wikitext: Literal["fast", "mwparserfromhell"] = Field(
        "fast",
        description="Wikitext to text: 'fast' = linear template/table/ref stripper (~35x faster); "
        "'mwparserfromhell' = full parse, the slower reference.",
    )
    split_bytes: int | None = Field(
        DEFAULT_SPLIT_BYTES,
        ge=1024,
        description="Split a file larger than this into byte-range work units (uncompressed XML and "
        "multistream bz2); null = one unit per file.",
    )
    wiki: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The wiki's database name (`enwiki`, `dewiki`), part of every document id. Needed only for "
        "a dump without <siteinfo> whose file name does not follow the dump convention "
        "(`<dbname>-<date>-pages-articles...`); a siteinfo <dbname> that differs is an error.",
    )
    max_page_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Skip a page whose XML is larger than this (reason wikipedia/page_too_large); bounds memory "
        "on a damaged or hostile dump (the largest real articles are a few MB).",
    )
    filters: FilterSetSpec = Field(default_factory=_wikipedia_filters, description="Quality filters.")


class CommonCrawlSource(_SourceBase):
    """Common Crawl WARC (HTML `response` records) or WET (`conversion` records) files."""

    kind: Literal["common_crawl"]
    paths: list[str] = Field(
        default_factory=list, description="Globs or fsspec URLs of .warc(.gz) / .wet(.gz) files."
    )
    paths_file: str | None = Field(
        None,
        description="A Common Crawl path listing (e.g. .../CC-MAIN-2024-22/wet.paths.gz, compressed or not): "
        "one relative path per line, joined to `base_url`. Added after `paths`.",
    )
    base_url: str = Field(
        "https://data.commoncrawl.org/", description="Prefix for the relative paths listed in `paths_file`."
    )
    max_files: int | None = Field(
        None, ge=1, description="Take only the first N files of `paths_file` (a slice of a crawl); null = all."
    )
    extractor: Literal["resiliparse", "trafilatura"] = Field(
        "resiliparse", description="HTML to text for WARC: resiliparse (fast, default) or trafilatura."
    )
    main_content: bool = Field(True, description="Extract the main content only (drop navigation, footers).")
    max_html_bytes: int = Field(
        5_000_000, ge=1, description="Skip HTML payloads larger than this (reason common_crawl/html_too_large)."
    )
    filters: FilterSetSpec = Field(default_factory=FilterSetSpec, description="Quality filters.")

    @model_validator(mode="after")
    def _has_inputs(self) -> CommonCrawlSource:
        if not self.paths and not self.paths_file:
            raise ValueError("give `paths` (files or globs) or `paths_file` (a Common Crawl path listing)")
        return self


class BooksSource(_SourceBase):
    """Plain-text books, one file per book; Project Gutenberg headers and footers are stripped."""

    kind: Literal["books"]
    paths: list[str] = Field(min_length=1, description="Globs or fsspec URLs of .txt files.")
    strip_boilerplate: bool = Field(True, description="Strip Project Gutenberg-style headers and footers.")
    max_book_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Drop a book larger than this once decompressed (reason books/too_large); reading stops at "
        "the cap, so a compression bomb costs at most this much memory.",
    )
    filters: FilterSetSpec = Field(default_factory=_books_filters, description="Quality filters.")


class HFDatasetSource(_SourceBase):
    """A Hugging Face dataset read with `datasets` in streaming mode."""

    kind: Literal["hf_dataset"]
    name: str = Field(description="Hub id (bookcorpus/bookcorpus) or a builder name (json, parquet, text).")
    config: str | None = Field(None, description="Dataset configuration name.")
    split: str = Field("train", description="Split to read.")
    revision: str | None = Field(None, description="Hub revision (commit) to pin; part of the cache key.")
    data_files: list[str] | None = Field(
        None, description="Files for builder names such as json or parquet (local paths or URLs)."
    )
    text_field: str = Field("text", description="Column holding the document text.")
    id_field: str | None = Field(None, description="Column holding a stable id; null = the row index.")
    filters: FilterSetSpec = Field(default_factory=FilterSetSpec, description="Quality filters.")


SourceSpec = Annotated[
    WikipediaSource | CommonCrawlSource | BooksSource | HFDatasetSource, Field(discriminator="kind")
]
