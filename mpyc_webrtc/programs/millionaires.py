"""Who is richest (Yao's millionaires): everyone learns who has the most, and how much.

Each party enters its wealth (a whole number from 0 to 1,000,000,000,000). A secure
argmax reveals the party number of the richest party and that party's amount; if several
parties have the same largest amount, the lowest party number among them is named (nobody
learns that there was a tie). All other amounts stay secret.

Three parties on this machine, each in its own terminal:
    python -m mpyc_webrtc.programs.millionaires -M3 -I0 --input=250000
    python -m mpyc_webrtc.programs.millionaires -M3 -I1 --input=1000000
    python -m mpyc_webrtc.programs.millionaires -M3 -I2 --input=999999
"""

from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, format_number, party_name, publish, read_input


async def main():
    wealth = read_input('millionaires')
    secint = mpc.SecInt(64)  # amounts up to 10^12 < 2^40; comparisons need the room
    await mpc.start()
    amounts = mpc.input(secint(wealth))
    richest, most = mpc.argmax(amounts)
    richest, most = await mpc.output([richest, most])
    # party_name: what people call a party ('Bob'), else 'party 2' for pid 1.
    publish(Result('Who is richest?',
                   f'{party_name(richest, start=True)} has the most: {format_number(most)}.',
                   rows=[('Parties', str(len(mpc.parties))), ('Richest', party_name(richest)),
                         ('Amount', format_number(most))]))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
