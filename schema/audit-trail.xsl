<?xml version="1.0" encoding="UTF-8"?>
<!--
  audit-trail.xsl - renders an audit-trail XML file (see audit-trail.xsd) as
  an HTML table.

  Firefox applies it directly through the xml-stylesheet processing
  instruction of the archive file; elsewhere run
      xsltproc audit-trail.xsl file.xml > file.html

  XSLT 1.0 only, no extension functions, no disable-output-escaping, no
  JavaScript, no external resources.

  * Text is copied verbatim and escaped by the XSLT processor; whitespace is
    kept visible with CSS white-space: pre-wrap.
  * XSLT 1.0 cannot decode base64, so fields with encoding="base64" are shown
    as "[base64]" followed by the encoded text.
  * Elements this stylesheet does not know (newer formats) are listed in the
    "Other" column instead of being dropped.
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">

  <!-- The processor writes the charset <meta> itself (xsltproc), or the
       browser already knows the encoding (Firefox). -->
  <xsl:output method="html" encoding="UTF-8" indent="no"
              doctype-system="about:legacy-compat"/>

  <!-- Record children that have a column (or a place in one) of their own. -->
  <xsl:variable name="known"
    select="'|TimeStamp|DetailLevel|UserName|FirstName|LastName|Tenant|SourceIP|Node|AppName|AppContext|ActionType|ActionData|Category|Outcome|AuthType|SessionId|'"/>

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
    <xsl:variable name="title">
      <xsl:text>Audit trail – </xsl:text>
      <xsl:value-of select="@host"/>
      <xsl:text> – created </xsl:text>
      <xsl:value-of select="@created"/>
      <xsl:if test="Seal">
        <xsl:text> – records </xsl:text>
        <xsl:value-of select="Seal/@first-id"/>
        <xsl:text>–</xsl:text>
        <xsl:value-of select="Seal/@last-id"/>
        <xsl:if test="Seal/@records">
          <xsl:text> (</xsl:text>
          <xsl:value-of select="Seal/@records"/>
          <xsl:text> records)</xsl:text>
        </xsl:if>
      </xsl:if>
    </xsl:variable>
    <html lang="en">
      <head>
        <title><xsl:value-of select="$title"/></title>
        <style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #fff; margin: 1.5em; }
h1 { font-size: 1.3em; margin: 0 0 .4em; font-weight: 600; }
.meta { margin: 0 0 1em; color: #57606a; }
.meta span { margin-right: 1.5em; white-space: nowrap; }
.meta b { color: #1f2328; font-weight: 600; }
.warn { color: #b42318; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; position: sticky; top: 0; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f9fafb; }
tbody tr.failure, tbody tr.failure:nth-child(even) { background: #fdecec; }
td.id, td.ts { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.ts, td.ip { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.v { white-space: pre-wrap; overflow-wrap: anywhere; tab-size: 4; -moz-tab-size: 4; }
td.ts .v { white-space: nowrap; }
td.data .v { display: block; font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; min-width: 16em; }
.b64 { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; color: #6e4a00; }
.b64 .tag { display: inline-block; background: #fff4d6; border: 1px solid #e3c26b; border-radius: 3px; padding: 0 3px; font-size: 11px; }
.sub { display: block; color: #57606a; font-size: 12px; }
.outcome-success { color: #1a7f37; }
.outcome-failure { color: #b42318; font-weight: 700; }
.none { color: #8c959f; font-style: italic; }
dl.other { margin: 0; font-size: 12px; }
dl.other dt { display: inline; color: #57606a; }
dl.other dt::after { content: ": "; }
dl.other dd { display: inline; margin: 0; }
dl.other dd::after { content: ""; display: block; }
.foot { margin-top: 1em; color: #57606a; font-size: 12px; }
@media print { th { position: static; } body { margin: 0; } }
        </style>
      </head>
      <body>
        <h1><xsl:value-of select="$title"/></h1>
        <p class="meta">
          <span>Host: <b><xsl:value-of select="@host"/></b></span>
          <span>Created: <b><xsl:value-of select="@created"/></b></span>
          <xsl:if test="@format">
            <span>Format: <b><xsl:value-of select="@format"/></b></span>
          </xsl:if>
          <xsl:if test="@first-id">
            <span>First id: <b><xsl:value-of select="@first-id"/></b></span>
          </xsl:if>
          <xsl:choose>
            <xsl:when test="Seal">
              <span>Sealed: <b><xsl:value-of select="Seal/@sealed"/></b></span>
              <span>Seal range: <b><xsl:value-of select="Seal/@first-id"/>–<xsl:value-of select="Seal/@last-id"/></b></span>
              <span>Seal count: <b><xsl:value-of select="Seal/@records"/></b></span>
              <xsl:if test="Seal/@chain-end">
                <span>Chain end: <b><xsl:value-of select="substring(Seal/@chain-end, 1, 16)"/>…</b></span>
              </xsl:if>
              <xsl:if test="Seal/@key-id">
                <span>MAC key id: <b><xsl:value-of select="Seal/@key-id"/></b> (check with audit-trail verify --key)</span>
              </xsl:if>
            </xsl:when>
            <xsl:otherwise>
              <span>Not sealed (export document)</span>
            </xsl:otherwise>
          </xsl:choose>
          <span>Records in file: <b><xsl:value-of select="count(Record)"/></b></span>
          <span>Failures: <b><xsl:value-of select="count(Record[Outcome = 'failure'])"/></b></span>
          <xsl:if test="Seal/@records and number(Seal/@records) != count(Record)">
            <span class="warn">The seal states <xsl:value-of select="Seal/@records"/> records but the file contains <xsl:value-of select="count(Record)"/>.</span>
          </xsl:if>
        </p>
        <table>
          <thead>
            <tr>
              <th>ID</th>
              <th>Time Stamp</th>
              <th>User Name</th>
              <th>Source IP</th>
              <th>App Name</th>
              <th>App Context</th>
              <th>Action Type</th>
              <th>Action Data</th>
              <th>Tenant</th>
              <th>Category</th>
              <th>Outcome</th>
              <th>Other</th>
            </tr>
          </thead>
          <tbody>
            <xsl:apply-templates select="Record"/>
            <xsl:if test="not(Record)">
              <tr><td colspan="12" class="none">No records.</td></tr>
            </xsl:if>
          </tbody>
        </table>
        <p class="foot">
          Fields marked [base64] hold the base64 of the UTF-8 value (the value contains characters XML 1.0 cannot carry); decode them with e.g. <code>base64 -d</code>.
        </p>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="Record">
    <tr id="r{@id}">
      <xsl:if test="Outcome = 'failure'">
        <xsl:attribute name="class">failure</xsl:attribute>
      </xsl:if>
      <td class="id"><xsl:value-of select="@id"/></td>
      <td class="ts"><xsl:apply-templates select="TimeStamp"/></td>
      <td>
        <xsl:apply-templates select="UserName"/>
        <xsl:if test="FirstName or LastName">
          <span class="sub">
            <xsl:apply-templates select="FirstName"/>
            <xsl:if test="FirstName and LastName"><xsl:text> </xsl:text></xsl:if>
            <xsl:apply-templates select="LastName"/>
          </span>
        </xsl:if>
      </td>
      <td class="ip"><xsl:apply-templates select="SourceIP"/></td>
      <td><xsl:apply-templates select="AppName"/></td>
      <td><xsl:apply-templates select="AppContext"/></td>
      <td><xsl:apply-templates select="ActionType"/></td>
      <td class="data"><xsl:apply-templates select="ActionData"/></td>
      <td><xsl:apply-templates select="Tenant"/></td>
      <td><xsl:apply-templates select="Category"/></td>
      <td>
        <xsl:if test="Outcome">
          <xsl:attribute name="class">outcome-<xsl:value-of select="Outcome"/></xsl:attribute>
          <xsl:apply-templates select="Outcome"/>
        </xsl:if>
      </td>
      <td>
        <dl class="other">
          <xsl:for-each select="DetailLevel | Node | AuthType | SessionId
                                | *[not(contains($known, concat('|', local-name(), '|')))]">
            <dt><xsl:value-of select="local-name()"/></dt>
            <dd><xsl:apply-templates select="."/></dd>
          </xsl:for-each>
        </dl>
      </td>
    </tr>
  </xsl:template>

  <!-- Any field value: base64 marker, or the text with whitespace kept. -->
  <xsl:template match="Record/*">
    <xsl:choose>
      <xsl:when test="@encoding = 'base64'">
        <span class="b64" title="base64 of the UTF-8 value"><span class="tag">[base64]</span><xsl:text> </xsl:text><xsl:value-of select="."/></span>
      </xsl:when>
      <xsl:when test="@encoding">
        <span class="b64"><span class="tag">[<xsl:value-of select="@encoding"/>]</span><xsl:text> </xsl:text><xsl:value-of select="."/></span>
      </xsl:when>
      <xsl:otherwise>
        <span class="v"><xsl:value-of select="."/></span>
      </xsl:otherwise>
    </xsl:choose>
  </xsl:template>

</xsl:stylesheet>
