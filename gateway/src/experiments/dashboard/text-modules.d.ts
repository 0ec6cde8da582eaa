// Files bundled as text modules (wrangler.toml [[rules]] type "Text"; gateway/test/node/text-modules-plugin.ts
// does the same under vitest): their default export is the file's content.
declare module '*.client.js' {
  const text: string
  export default text
}
declare module '*/chart.umd.min.js' {
  const text: string
  export default text
}
