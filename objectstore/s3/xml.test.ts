import { test } from "node:test";
import assert from "node:assert/strict";
import { list, parseXml, simpleCompleteParts, text } from "./xml.js";

/** What the general parser reads from a CompleteMultipartUpload document (as ops-multipart.ts does), or its error code. */
function general(doc: string): { partNumber?: string; etag?: string }[] | string {
  try {
    return list(parseXml(doc, "CompleteMultipartUpload"), "Part").map((p) => ({ partNumber: text(p, "PartNumber"), etag: text(p, "ETag") }));
  } catch (err) {
    return `error ${(err as { code?: string }).code}`;
  }
}

test("simpleCompleteParts reads SDKs' CompleteMultipartUpload documents exactly as the general parser does, and leaves every other document to it", () => {
  const parts = (n: number) => Array.from({ length: n }, (_, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${String(i).padStart(32, "0")}"</ETag></Part>`).join("");
  const fast = [
    `<CompleteMultipartUpload>${parts(1000)}</CompleteMultipartUpload>`,
    `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\n  <Part>\n    <ETag>&quot;abc&quot;</ETag>\n <ChecksumCRC32>AAAA==</ChecksumCRC32>   <PartNumber> 2 </PartNumber>\n  </Part>\n</CompleteMultipartUpload>\n`,
    `<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag> e > f </ETag></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload></CompleteMultipartUpload>`,
  ];
  for (const doc of fast) {
    const got = simpleCompleteParts(doc);
    assert.ok(got, doc.slice(0, 80));
    assert.deepEqual(got, general(doc), doc.slice(0, 80));
  }
  assert.equal(simpleCompleteParts(fast[0]!)!.length, 1000);
  assert.deepEqual(simpleCompleteParts(fast[1]!), [{ partNumber: " 2 ", etag: '"abc"' }]);
  const others = [
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&amp;x</ETag></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#34;x&#34;</ETag></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part><Foo/></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</Etag></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>trailing`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>`,
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag><![CDATA[x]]></ETag></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><!-- c --><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>`,
    `<s3:CompleteMultipartUpload xmlns:s3="x"><s3:Part><s3:PartNumber>1</s3:PartNumber><s3:ETag>x</s3:ETag></s3:Part></s3:CompleteMultipartUpload>`,
    `<CompleteMultipartUpload foo="1"><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>`,
    `<CompleteMultipartUpload><Part><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Part></CompleteMultipartUpload>`,
    `<Delete><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Delete>`,
    ``,
  ];
  for (const doc of others) assert.equal(simpleCompleteParts(doc), undefined, doc);
});
