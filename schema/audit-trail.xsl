<?xml version="1.0" encoding="UTF-8"?>
<!--
  audit-trail.xsl - renders an audit-trail XML file (see audit-trail.xsd) as
  the same HTML table as the HTML export (audit-trail export, format html),
  for those who use XSLT:
      xsltproc audit-trail.xsl file.xml > file.html
  or a browser that gets the files over http(s) from a web server. Browsers
  refuse the stylesheet of a file opened from disk (file: URLs): Chromium
  does, and Firefox by its default file-origin policy; for them, use the
  HTML export, which opens from disk everywhere.

  XSLT 1.0 only, no extension functions, no disable-output-escaping, no
  JavaScript, no external resources; the output allows no script and no
  load (Content-Security-Policy) but its own stylesheet.

  * Text is copied by the XSLT processor, which escapes it; whitespace is
    kept visible with CSS white-space: pre-wrap.
  * Each value sits in a <bdi> (isolated: right-to-left text cannot reorder
    what is around it), and characters that are invisible or change how the
    text around them is displayed are shown as marked escapes such as
    \u202E instead of themselves (bidi controls, tab, CR, DEL, C1 controls,
    soft hyphen, zero-width space, line and paragraph separators, word
    joiners, BOM; the same set as the HTML export but the tag characters
    U+E0000-U+E007F, and the control characters XML cannot carry, which are
    in base64 fields).
  * XSLT 1.0 cannot decode base64, so fields with encoding="base64" are shown
    as "[base64]" followed by the encoded text.
  * Elements this stylesheet does not know (newer formats) are listed on the
    record's detail line instead of being dropped.
  * The stylesheet (print rules included: every column fits A4 and Letter
    portrait) is the one of the HTML export; keep both the same, and the
    sha256 in the Content-Security-Policy with it (a test checks).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">

  <!-- The processor writes the charset <meta> itself (xsltproc), or the
       browser already knows the encoding. -->
  <xsl:output method="html" encoding="UTF-8" indent="no"
              doctype-system="about:legacy-compat"/>

  <!-- Record children that have a column (or a place in one) of their own. -->
  <xsl:variable name="known"
    select="'|TimeStamp|DetailLevel|UserName|FirstName|LastName|Tenant|SourceIP|Node|AppName|AppContext|ActionType|ActionData|Category|Outcome|AuthType|SessionId|Chain|'"/>

  <!-- Characters shown as escapes; the first $nbidi are bidi controls. Their
       code points, four hex digits each, in $codes. -->
  <xsl:variable name="marked" select="'&#x61C;&#x200E;&#x200F;&#x202A;&#x202B;&#x202C;&#x202D;&#x202E;&#x2066;&#x2067;&#x2068;&#x2069;&#x9;&#xD;&#x7F;&#x80;&#x81;&#x82;&#x83;&#x84;&#x85;&#x86;&#x87;&#x88;&#x89;&#x8A;&#x8B;&#x8C;&#x8D;&#x8E;&#x8F;&#x90;&#x91;&#x92;&#x93;&#x94;&#x95;&#x96;&#x97;&#x98;&#x99;&#x9A;&#x9B;&#x9C;&#x9D;&#x9E;&#x9F;&#xAD;&#x180E;&#x200B;&#x2028;&#x2029;&#x2060;&#x2061;&#x2062;&#x2063;&#x2064;&#x206A;&#x206B;&#x206C;&#x206D;&#x206E;&#x206F;&#xFEFF;&#xFFF9;&#xFFFA;&#xFFFB;'"/>
  <xsl:variable name="codes" select="'061C200E200F202A202B202C202D202E20662067206820690009000D007F0080008100820083008400850086008700880089008A008B008C008D008E008F0090009100920093009400950096009700980099009A009B009C009D009E009F00AD180E200B2028202920602061206220632064206A206B206C206D206E206FFEFFFFF9FFFAFFFB'"/>
  <xsl:variable name="nbidi" select="12"/>

  <xsl:template match="/">
    <xsl:apply-templates select="AuditTrail"/>
    <xsl:if test="not(AuditTrail)">
      <html>
        <head><title>Not an audit trail</title></head>
        <body><p>This document has no AuditTrail root element.</p></body>
      </html>
    </xsl:if>
  </xsl:template>

  <xsl:template match="AuditTrail">
    <html lang="en">
      <head>
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'sha256-Nl/Kf3JwUI9PbQQvV4jp7DbGOszInRxRStW4DuCK9QA='; img-src 'none'; base-uri 'none'; form-action 'none'"/>
        <meta name="referrer" content="no-referrer"/>
        <title>
          <xsl:text>Audit trail of </xsl:text>
          <xsl:value-of select="@host"/>
          <xsl:if test="Seal">
            <xsl:text>, records </xsl:text>
            <xsl:value-of select="Seal/@first-id"/>
            <xsl:text>&#x2013;</xsl:text>
            <xsl:value-of select="Seal/@last-id"/>
          </xsl:if>
        </title>
        <style>/* audit-trail report: the HTML export and audit-trail.xsl share this stylesheet. */
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #fff; margin: 1.5em; }
h1 { font-size: 1.3em; margin: 0 0 .4em; font-weight: 600; }
dl.meta { display: flex; flex-wrap: wrap; gap: .2em 1.5em; margin: 0 0 .6em; color: #57606a; }
dl.meta dt, dl.meta dd { display: inline; margin: 0; }
dl.meta dd { color: #1f2328; font-weight: 600; }
.note { color: #57606a; font-size: 12px; margin: 0 0 .8em; }
.warn { color: #b42318; font-weight: 600; }
.tools { display: flex; flex-wrap: wrap; gap: .4em .8em; align-items: end; margin: 0 0 .6em; font-size: 13px; }
.tools label { display: flex; flex-direction: column; color: #57606a; font-size: 12px; }
.tools input, .tools select, .tools button { font: inherit; font-size: 13px; }
.tools input[type=search] { width: 18em; }
.tools .col input { width: 9em; }
.view { font-size: 12px; color: #57606a; margin: 0 0 .4em; }
div.chunk { content-visibility: auto; contain-intrinsic-size: auto 40000px; }
table.at { border-collapse: collapse; width: 100%; min-width: 80em; table-layout: fixed; }
table.at th, table.at td { border: 1px solid #d0d7de; padding: 3px 6px; text-align: left; vertical-align: top; }
table.at th { background: #f0f3f6; position: sticky; top: 0; z-index: 1; font-weight: 600; }
table.at th.sort { cursor: pointer; }
table.at th.sort:focus-visible { outline: 2px solid #0969da; outline-offset: -2px; }
table.at th[aria-sort=ascending]::after { content: " \25B2"; font-size: .8em; }
table.at th[aria-sort=descending]::after { content: " \25BC"; font-size: .8em; }
table.at td { white-space: pre-wrap; overflow-wrap: anywhere; tab-size: 4; -moz-tab-size: 4; }
table.at tbody.r:nth-of-type(even) { background: #f9fafb; }
table.at tbody.f, table.at tbody.f:nth-of-type(even) { background: #fdecec; }
table.at tr.d td { border-top: 0; padding-top: 0; font-size: 11px; color: #57606a; }
table.at td.id, table.at td.ts { font-variant-numeric: tabular-nums; }
table.at td.ts, table.at td.ip, table.at td.data, .h, .b64 { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; }
table.at td.none { color: #8c959f; font-style: italic; }
.sub { display: block; color: #57606a; font-size: 12px; }
.kv { margin-right: 1em; }
.k { color: #8c959f; }
.h { font-size: 11px; color: #57606a; word-break: break-all; }
.s .o { color: #1a7f37; }
.f .o { color: #b42318; font-weight: 700; }
bdi { unicode-bidi: isolate; }
.c { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: .85em; font-style: normal; font-weight: 600; color: #7a4100; background: #fff1d6; border: 1px solid #d4a72c; border-radius: 2px; padding: 0 1px; display: inline-block; line-height: 1.2; white-space: nowrap; }
.c.b { color: #fff; background: #b42318; border-color: #7a1a12; }
.b64 { color: #6e4a00; word-break: break-all; }
.b64 .tag { display: inline-block; background: #fff4d6; border: 1px solid #e3c26b; border-radius: 3px; padding: 0 3px; font-size: 11px; }
.foot { margin-top: 1em; color: #57606a; font-size: 12px; }
col.c-id { width: 6%; }
col.c-ts { width: 12%; }
col.c-user { width: 8%; }
col.c-tenant { width: 6%; }
col.c-ip { width: 9%; }
col.c-app { width: 8%; }
col.c-ctx { width: 7%; }
col.c-action { width: 7%; }
col.c-data { width: 22%; }
col.c-cat { width: 7%; }
col.c-outcome { width: 8%; }
@page { margin: 10mm 8mm; }
@media print {
  body { margin: 0; font-size: 7pt; line-height: 1.25; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h1 { font-size: 10pt; }
  dl.meta, .note, .view, .foot { font-size: 7pt; }
  .tools, noscript { display: none !important; }
  div.chunk { content-visibility: visible; }
  table.at { min-width: 0; }
  table.at thead { display: table-header-group; }
  table.at th { position: static; font-size: 6.5pt; overflow-wrap: normal; }
  table.at th::after { content: none !important; }
  table.at th, table.at td { padding: 1px 2px; }
  table.at td.ts, table.at td.ip, table.at td.data { font-size: 6.5pt; }
  table.at tr.d td { font-size: 6pt; }
  table.at tbody.r { break-inside: avoid; }
  .sub { font-size: 6.5pt; }
  .h { font-size: 5.5pt; }
  col.c-id { width: 6%; }
  col.c-ts { width: 9%; }
  col.c-user { width: 9%; }
  col.c-tenant { width: 7%; }
  col.c-ip { width: 9%; }
  col.c-app { width: 9%; }
  col.c-ctx { width: 8%; }
  col.c-action { width: 8%; }
  col.c-data { width: 20%; }
  col.c-cat { width: 8%; }
  col.c-outcome { width: 7%; }
}
</style>
      </head>
      <body>
        <h1>Audit trail of <bdi><xsl:call-template name="mark"><xsl:with-param name="s" select="@host"/></xsl:call-template></bdi></h1>
        <dl class="meta">
          <div><dt>Host:</dt><xsl:text> </xsl:text><dd><bdi><xsl:call-template name="mark"><xsl:with-param name="s" select="@host"/></xsl:call-template></bdi></dd></div>
          <div><dt>Created:</dt><xsl:text> </xsl:text><dd><bdi><xsl:value-of select="@created"/></bdi></dd></div>
          <xsl:if test="@format">
            <div><dt>Format:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="@format"/></dd></div>
          </xsl:if>
          <xsl:if test="@first-id">
            <div><dt>First id:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="@first-id"/></dd></div>
          </xsl:if>
          <xsl:choose>
            <xsl:when test="Seal">
              <div><dt>Sealed:</dt><xsl:text> </xsl:text><dd><bdi><xsl:value-of select="Seal/@sealed"/></bdi></dd></div>
              <div><dt>Seal range:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="Seal/@first-id"/>&#x2013;<xsl:value-of select="Seal/@last-id"/></dd></div>
              <div><dt>Seal count:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="Seal/@records"/></dd></div>
              <xsl:if test="Seal/@chain-end">
                <div><dt>Chain end:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="substring(Seal/@chain-end, 1, 16)"/>&#x2026;</dd></div>
              </xsl:if>
              <xsl:if test="Seal/@key-id">
                <div><dt>MAC key id:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="Seal/@key-id"/> (check with audit-trail verify --key)</dd></div>
              </xsl:if>
            </xsl:when>
            <xsl:otherwise>
              <div><dt>Seal:</dt><xsl:text> </xsl:text><dd>none (export document)</dd></div>
            </xsl:otherwise>
          </xsl:choose>
          <div><dt>Records in file:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="count(Record)"/></dd></div>
          <div><dt>Failures:</dt><xsl:text> </xsl:text><dd><xsl:value-of select="count(Record[Outcome = 'failure'])"/></dd></div>
          <xsl:if test="Seal/@records and number(Seal/@records) != count(Record)">
            <div class="warn">The seal states <xsl:value-of select="Seal/@records"/> records but the file contains <xsl:value-of select="count(Record)"/>.</div>
          </xsl:if>
        </dl>
        <p class="note">Each value is shown exactly as stored. Characters that are invisible or would change how the text around them is displayed are shown as escapes: <span class="c">\u0009</span> for control characters and <span class="c b">\u202E</span> for bidirectional controls (never applied); line feeds are line breaks. Fields marked <span class="b64"><span class="tag">[base64]</span></span> hold the base64 of the UTF-8 value (the value contains characters XML 1.0 cannot carry); decode them with e.g. <code>base64 -d</code>, or use <code>audit-trail export --format html</code>, which shows them decoded. Each record's detail line gives its other fields and its hash chain value; <code>audit-trail verify</code> checks the file itself.</p>
        <table class="at" id="records">
          <colgroup><col class="c-id"/><col class="c-ts"/><col class="c-user"/><col class="c-tenant"/><col class="c-ip"/><col class="c-app"/><col class="c-ctx"/><col class="c-action"/><col class="c-data"/><col class="c-cat"/><col class="c-outcome"/></colgroup>
          <thead>
            <tr><th scope="col">ID</th><th scope="col">Time Stamp</th><th scope="col">User Name</th><th scope="col">Tenant</th><th scope="col">Source IP</th><th scope="col">App Name</th><th scope="col">App Context</th><th scope="col">Action Type</th><th scope="col">Action Data</th><th scope="col">Category</th><th scope="col">Outcome</th></tr>
          </thead>
          <xsl:apply-templates select="Record"/>
          <xsl:if test="not(Record)">
            <tbody class="none"><tr><td class="none" colspan="11">No records.</td></tr></tbody>
          </xsl:if>
        </table>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="Record">
    <tbody>
      <xsl:attribute name="class">
        <xsl:text>r</xsl:text>
        <xsl:choose>
          <xsl:when test="Outcome = 'failure'"> f</xsl:when>
          <xsl:when test="Outcome = 'success'"> s</xsl:when>
        </xsl:choose>
      </xsl:attribute>
      <tr id="r{@id}">
        <td class="id"><xsl:value-of select="@id"/></td>
        <td class="ts"><xsl:apply-templates select="TimeStamp"/></td>
        <td class="user">
          <xsl:apply-templates select="UserName"/>
          <xsl:if test="FirstName or LastName">
            <span class="sub">
              <xsl:apply-templates select="FirstName"/>
              <xsl:if test="FirstName and LastName"><xsl:text> </xsl:text></xsl:if>
              <xsl:apply-templates select="LastName"/>
            </span>
          </xsl:if>
        </td>
        <td class="tenant"><xsl:apply-templates select="Tenant"/></td>
        <td class="ip"><xsl:apply-templates select="SourceIP"/></td>
        <td class="app"><xsl:apply-templates select="AppName"/></td>
        <td class="ctx"><xsl:apply-templates select="AppContext"/></td>
        <td class="action"><xsl:apply-templates select="ActionType"/></td>
        <td class="data"><xsl:apply-templates select="ActionData"/></td>
        <td class="cat"><xsl:apply-templates select="Category"/></td>
        <td class="o"><xsl:apply-templates select="Outcome"/></td>
      </tr>
      <tr class="d">
        <td colspan="11">
          <xsl:for-each select="DetailLevel | Node | AuthType | SessionId
                                | *[not(contains($known, concat('|', local-name(), '|')))]">
            <span class="kv">
              <span class="k">
                <xsl:choose>
                  <xsl:when test="self::DetailLevel">Detail Level</xsl:when>
                  <xsl:when test="self::AuthType">Auth Type</xsl:when>
                  <xsl:when test="self::SessionId">Session Id</xsl:when>
                  <xsl:otherwise><xsl:value-of select="local-name()"/></xsl:otherwise>
                </xsl:choose>
                <xsl:text>:</xsl:text>
              </span>
              <xsl:text> </xsl:text>
              <xsl:apply-templates select="."/>
            </span>
            <xsl:text> </xsl:text>
          </xsl:for-each>
          <xsl:if test="Chain">
            <span class="kv"><span class="k">Chain:</span><xsl:text> </xsl:text><code class="h"><xsl:value-of select="Chain"/></code></span>
          </xsl:if>
        </td>
      </tr>
    </tbody>
  </xsl:template>

  <!-- A time stamp as written by the archiver gets break opportunities after
       the date and before the offset, for narrow printed columns. -->
  <xsl:template match="Record/TimeStamp[not(@encoding)][contains(., 'T')][translate(., '0123456789-:.+TZ', '') = '']"
                priority="1">
    <bdi>
      <xsl:value-of select="substring-before(., 'T')"/>
      <xsl:text>T</xsl:text>
      <wbr/>
      <xsl:value-of select="substring(substring-after(., 'T'), 1, 12)"/>
      <xsl:if test="string-length(substring-after(., 'T')) &gt; 12">
        <wbr/>
        <xsl:value-of select="substring(substring-after(., 'T'), 13)"/>
      </xsl:if>
    </bdi>
  </xsl:template>

  <!-- Any field value, isolated: base64 marker, or the text with marked
       characters shown as escapes and whitespace kept. -->
  <xsl:template match="Record/*">
    <bdi>
      <xsl:choose>
        <xsl:when test="@encoding = 'base64'">
          <span class="b64"><span class="tag">[base64]</span><xsl:text> </xsl:text><xsl:value-of select="."/></span>
        </xsl:when>
        <xsl:when test="@encoding">
          <span class="b64"><span class="tag">[<xsl:call-template name="mark"><xsl:with-param name="s" select="@encoding"/></xsl:call-template>]</span><xsl:text> </xsl:text><xsl:call-template name="mark"><xsl:with-param name="s" select="."/></xsl:call-template></span>
        </xsl:when>
        <xsl:otherwise>
          <xsl:call-template name="mark"><xsl:with-param name="s" select="."/></xsl:call-template>
        </xsl:otherwise>
      </xsl:choose>
    </bdi>
  </xsl:template>

  <!-- $s with every character of $marked written as a visible escape. Long
       text is cut in halves until short, so recursion stays shallow; in a
       short piece, marked characters are taken in the order of $marked
       (from $i on: the piece holds none before $i). -->
  <xsl:template name="mark">
    <xsl:param name="s"/>
    <xsl:param name="i" select="1"/>
    <xsl:choose>
      <xsl:when test="translate($s, $marked, '') = $s">
        <xsl:value-of select="$s"/>
      </xsl:when>
      <xsl:when test="string-length($s) &gt; 64">
        <xsl:variable name="half" select="floor(string-length($s) div 2)"/>
        <xsl:call-template name="mark">
          <xsl:with-param name="s" select="substring($s, 1, $half)"/>
        </xsl:call-template>
        <xsl:call-template name="mark">
          <xsl:with-param name="s" select="substring($s, $half + 1)"/>
        </xsl:call-template>
      </xsl:when>
      <xsl:otherwise>
        <xsl:variable name="c" select="substring($marked, $i, 1)"/>
        <xsl:choose>
          <xsl:when test="contains($s, $c)">
            <xsl:call-template name="mark">
              <xsl:with-param name="s" select="substring-before($s, $c)"/>
              <xsl:with-param name="i" select="$i + 1"/>
            </xsl:call-template>
            <span>
              <xsl:attribute name="class">
                <xsl:choose>
                  <xsl:when test="$i &lt;= $nbidi">c b</xsl:when>
                  <xsl:otherwise>c</xsl:otherwise>
                </xsl:choose>
              </xsl:attribute>
              <xsl:text>\u</xsl:text>
              <xsl:value-of select="substring($codes, 4 * ($i - 1) + 1, 4)"/>
            </span>
            <xsl:call-template name="mark">
              <xsl:with-param name="s" select="substring-after($s, $c)"/>
              <xsl:with-param name="i" select="$i"/>
            </xsl:call-template>
          </xsl:when>
          <xsl:otherwise>
            <xsl:call-template name="mark">
              <xsl:with-param name="s" select="$s"/>
              <xsl:with-param name="i" select="$i + 1"/>
            </xsl:call-template>
          </xsl:otherwise>
        </xsl:choose>
      </xsl:otherwise>
    </xsl:choose>
  </xsl:template>

</xsl:stylesheet>
