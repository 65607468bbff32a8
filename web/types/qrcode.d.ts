// The QR code maker as the lobby imports it: the ES module the server serves at
// /vendor/qrcode-generator/dist/qrcode.mjs (web/tsconfig.json maps that URL to this file).
// The package's own qrcode.d.ts describes its classic script (a global `qrcode`), so this
// borrows its types and names the module's exports.
/// <reference path="../../node_modules/qrcode-generator/dist/qrcode.d.ts" />

export declare const qrcode: QRCodeFactory;
export default qrcode;
export declare const stringToBytes: QRCodeFactory['stringToBytes'];
